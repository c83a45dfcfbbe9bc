#!/usr/bin/env python3
"""slim_db.py SRC DST: a copy of the fatune database SRC at DST without the cubins (what makes a
database too big to bring back from the GPU machine); trials, best rows and kernel hashes stay."""
import os, sqlite3, sys

src, dst = sys.argv[1], sys.argv[2]
if os.path.exists(dst):
    os.remove(dst)
c = sqlite3.connect(src)
c.execute("vacuum into ?", (dst,))
c.close()
c = sqlite3.connect(dst)
c.execute("update kernel set cubin = x''")
c.commit()
c.execute("vacuum")
c.close()
