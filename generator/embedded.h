/* embedded.h: the Lua files built into fatune (written by tools/embed.c at build time). */
#ifndef FAT_EMBEDDED_H
#define FAT_EMBEDDED_H
#include <stddef.h>

struct gen_file {
    const char *path;   /* as in the source tree: "templates/naive.lua" */
    const char *data;   /* NUL-terminated text */
    size_t len;
};

/* Terminated by an entry whose path is NULL. */
extern const struct gen_file gen_files[];

#endif
