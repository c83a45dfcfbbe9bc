# fatune: FlashAttention kernels generated from Lua templates, compiled with NVRTC, tuned per GPU.
#
#   make            build fatune (Lua and SQLite linked statically)
#   make test       install missing build dependencies, build, run the CPU test tier
#   make gpu-test   the GPU test tier (skips, with a count, where there is no GPU)
#   make run        fatune --gpu 0 on the default suite (compile-only check without a GPU)
#   make lib        build/libfatune.a and build/libfatune.so (the runtime library), build/fatune.pc
#   make examples   build/examples/attention and decode_step (C, linked statically); examples/torch_example.py
#   make install PREFIX=/usr/local   header, libraries, pkg-config file, fatune, Python module
#   make SAN=address,undefined test     sanitizer build;  V=1 shows full commands; WERROR=1 in CI

CC        ?= cc
CUDA_HOME ?= /usr/local/cuda
BUILD     ?= build
PREFIX    ?= /usr/local
PYTHONDIR ?= $(PREFIX)/share/fatune/python
LUA_CFLAGS ?= $(shell pkg-config --cflags lua5.4 2>/dev/null)
LUA_LIBS   ?= $(shell pkg-config --variable=libdir lua5.4 2>/dev/null)/liblua5.4.a
SQLITE_LIBS ?= $(shell pkg-config --variable=libdir sqlite3 2>/dev/null)/libsqlite3.a

WARN   = -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(CFLAGS) -Iruntime -Igenerator -Idb -Ituner \
             -I$(BUILD) -isystem $(CUDA_HOME)/include $(LUA_CFLAGS)
ifeq ($(WERROR),1)
ALL_CFLAGS += -Werror
endif
ifneq ($(SAN),)
ALL_CFLAGS += -fsanitize=$(SAN) -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SAN)
endif
LIBS = $(LUA_LIBS) $(SQLITE_LIBS) -ldl -lpthread -lm
# The shared library links Lua and SQLite dynamically: Debian's static archives are not built with
# -fPIC. It exports the fat_ API only (runtime/fatune.map) and finds libraries next to itself first.
SO_LIBS ?= -llua5.4 -lsqlite3 -ldl -lpthread -lm

ifeq ($(V),1)
Q =
else
Q = @
endif

# The Lua that travels inside the binary: every template and the generator's host code.
LUA_FILES = $(sort $(wildcard templates/*.lua templates/lib/*.lua templates/ops/*.lua)) generator/host.lua generator/default_shapes.lua

LIB_SRC = runtime/status.c runtime/args.c runtime/half.c runtime/cpu_attn.c runtime/cu.c runtime/rtc.c \
          runtime/launch.c runtime/dispatch.c runtime/ctx.c runtime/rows.c runtime/table.c runtime/resolve.c \
          runtime/modules.c generator/gen.c db/db.c
TUNER_SRC = tuner/pool.c tuner/check.c tuner/bench.c tuner/worker.c tuner/tune.c \
            tuner/inspect.c tuner/ship.c tuner/report.c tuner/choose.c
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/embedded.o
TUNER_OBJ = $(TUNER_SRC:%.c=$(BUILD)/%.o)
TESTS = test_gen test_db test_cpu_attn test_rtc test_ship test_runtime test_choose

.PHONY: all lib examples install test gpu-test run deps clean
all: $(BUILD)/fatune lib
lib: $(BUILD)/libfatune.a $(BUILD)/libfatune.so $(BUILD)/fatune.pc

$(BUILD)/embed: tools/embed.c
	@mkdir -p $(@D)
	@echo "HOSTCC $<"
	$(Q)$(CC) -O1 -o $@ $<

$(BUILD)/embedded.c: $(BUILD)/embed $(LUA_FILES)
	@echo "EMBED $(words $(LUA_FILES)) Lua files"
	$(Q)$(BUILD)/embed $@ $(LUA_FILES)

$(BUILD)/%.o: %.c $(wildcard runtime/*.h generator/*.h db/*.h tuner/*.h examples/*.h)
	@mkdir -p $(@D)
	@echo "CC $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/embedded.o: $(BUILD)/embedded.c generator/embedded.h
	@echo "CC $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The objects of the library with every symbol, for fatune itself and the tests.
$(BUILD)/libfatune-internal.a: $(LIB_OBJ)
	@echo "AR $@"
	$(Q)rm -f $@ && ar rcs $@ $^

# The public API: every function fatune.h declares, nothing else.
$(BUILD)/fatune.syms: runtime/fatune.h
	@mkdir -p $(@D)
	@echo "GEN $@"
	$(Q)grep -v '^typedef' $< | grep -oE '\bfat_[a-z0-9_]+\(' | tr -d '(' | sort -u > $@

# The static library an application links: one object whose only global symbols are the API's
# (the generator, database and CUDA loader inside must not clash with an application's).
$(BUILD)/libfatune.a: $(LIB_OBJ) $(BUILD)/fatune.syms
	@echo "AR $@"
	$(Q)rm -f $@ $(BUILD)/fatune-lib.o && ld -r -o $(BUILD)/fatune-lib.o $(LIB_OBJ) && \
	    objcopy --keep-global-symbols=$(BUILD)/fatune.syms $(BUILD)/fatune-lib.o && ar rcs $@ $(BUILD)/fatune-lib.o

$(BUILD)/libfatune.so: $(LIB_OBJ) runtime/fatune.map
	@echo "LINK $@"
	$(Q)$(CC) -shared $(LDFLAGS) -o $@ -Wl,-soname,libfatune.so -Wl,--version-script=runtime/fatune.map \
	    -Wl,-rpath,'$$ORIGIN' -Wl,--no-undefined $(LIB_OBJ) $(SO_LIBS)

FAT_VERSION = $(shell sed -n 's/^\#define FAT_VERSION "\(.*\)"/\1/p' runtime/fatune.h)
PC_SED = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(FAT_VERSION)|g'

$(BUILD)/fatune.pc: fatune.pc.in Makefile runtime/fatune.h
	@mkdir -p $(@D)
	@echo "GEN $@"
	$(Q)$(PC_SED) $< > $@

# The examples allocate device memory with the driver API, linked the usual way (the stub at build
# time, the driver's libcuda.so.1 at run time); the library itself still opens the driver with dlopen.
CUDA_DRIVER_LIBS ?= -L$(CUDA_HOME)/lib64/stubs -L$(CUDA_HOME)/lib64 -lcuda
EXAMPLES = $(BUILD)/examples/attention $(BUILD)/examples/decode_step
$(EXAMPLES): %: %.o $(BUILD)/libfatune.a
	@echo "LINK $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(CUDA_DRIVER_LIBS)

examples: $(EXAMPLES)

install: $(BUILD)/fatune lib
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PYTHONDIR)
	install -m 644 runtime/fatune.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/libfatune.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libfatune.so $(DESTDIR)$(PREFIX)/lib/
	$(PC_SED) fatune.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/fatune.pc
	install -m 755 $(BUILD)/fatune $(DESTDIR)$(PREFIX)/bin/
	$(MAKE) --no-print-directory install-python
	@echo "installed into $(DESTDIR)$(PREFIX); Python: PYTHONPATH=$(PYTHONDIR)"

$(BUILD)/fatune: $(BUILD)/tuner/main.o $(TUNER_OBJ) $(BUILD)/libfatune-internal.a
	@echo "LINK $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/test_%: $(BUILD)/tests/test_%.o $(TUNER_OBJ) $(BUILD)/libfatune-internal.a
	@echo "LINK $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/gpu_%: $(BUILD)/tests/gpu_%.o $(TUNER_OBJ) $(BUILD)/libfatune-internal.a
	@echo "LINK $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

deps:
	@sh tools/deps.sh

# `make test` must work on a fresh machine: install what is missing first, then build in a
# second make so that the pkg-config look-ups above see the new packages.
test: deps
	@$(MAKE) --no-print-directory test-build
	@sh tests/run.sh $(BUILD) $(TESTS) symbols cli deploy tune_sim python wheel scripts

.PHONY: test-build
# The examples are compiled here, linked by `make examples` (that needs the driver stub, libcuda.so).
test-build: $(BUILD)/fatune $(TESTS:%=$(BUILD)/%) lib $(EXAMPLES:%=%.o) $(BUILD)/gpu_test $(BUILD)/gpu_runtime \
            $(BUILD)/layout

# The public structs' layout, for the Python binding's test (tests/test_python.py).
$(BUILD)/layout: tests/layout.c runtime/fatune.h
	@mkdir -p $(@D)
	@echo "CC $<"
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $<

# On the GPU machine, from a build made elsewhere: sh tools/gpu-runtime.sh (no make, no compiler).
gpu-test: $(BUILD)/fatune $(BUILD)/gpu_test $(BUILD)/gpu_runtime lib
	@sh tests/run.sh $(BUILD) gpu_test gpu_contract gpu_tune gpu_runtime python

run: deps
	@$(MAKE) --no-print-directory $(BUILD)/fatune
	$(BUILD)/fatune --gpu 0 --or-check

clean:
	rm -rf $(BUILD)

# ---- Python: the extension module, its install and the wheel (python/, pyproject.toml) -------------
#   make python    build/_fatune.abi3.so (CPython's limited API 3.10: one build imports on 3.10+), lib
#   make wheel     BUILD/dist/fatune-*.whl through pyproject.toml's in-tree backend (python/fatune_build.py),
#                  which runs this Makefile; tests/test_wheel.sh installs one into a fresh venv
PYTHON ?= python3
PY_INCLUDE := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)
PY_EXT = $(BUILD)/_fatune.abi3.so
# No -Wpedantic: CPython's type slots hold functions as void *, which ISO C does not allow.
PY_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(filter-out -Wpedantic,$(WARN)) $(CFLAGS) \
            -DPy_LIMITED_API=0x030A0000 -Iruntime -isystem $(PY_INCLUDE)
ifeq ($(WERROR),1)
PY_CFLAGS += -Werror
endif
ifneq ($(SAN),)
PY_CFLAGS += -fsanitize=$(SAN) -fno-omit-frame-pointer
endif
PY_FILES = $(wildcard python/fatune/*.py python/fatune/integrations/*.py)

.PHONY: python install-python wheel
python: $(PY_EXT) lib

$(PY_EXT): python/fatune/_fatune.c runtime/fatune.h
	@mkdir -p $(@D)
	@test -f "$(PY_INCLUDE)/Python.h" || { echo "make python: no Python.h for $(PYTHON) (install python3-dev)"; exit 1; }
	@echo "CC $<"
	$(Q)$(CC) $(PY_CFLAGS) -shared $(LDFLAGS) -o $@ $< -lpthread

# The CPU tier builds the extension wherever Python's headers are (tests/test_python.sh skips
# its checks, with a count, where they are not).
ifneq ($(wildcard $(PY_INCLUDE)/Python.h),)
test-build: $(PY_EXT)
gpu-test: $(PY_EXT)
endif

# The package, and its extension where Python's headers are (without it the package says how to
# get one when a call needs it).
ifneq ($(wildcard $(PY_INCLUDE)/Python.h),)
install-python: $(PY_EXT)
endif
install-python:
	install -d $(DESTDIR)$(PYTHONDIR)/fatune/integrations
	install -m 644 $(filter-out python/fatune/integrations/%,$(PY_FILES)) $(DESTDIR)$(PYTHONDIR)/fatune/
	install -m 644 $(filter python/fatune/integrations/%,$(PY_FILES)) $(DESTDIR)$(PYTHONDIR)/fatune/integrations/
	if [ -f $(PY_EXT) ]; then install -m 755 $(PY_EXT) $(DESTDIR)$(PYTHONDIR)/fatune/; \
	else echo "install-python: no $(PY_EXT) (no Python.h for $(PYTHON)): the package is installed without it"; fi

wheel:
	$(PYTHON) -m pip wheel --no-deps --no-index -w $(BUILD)/dist -C build-dir=$(BUILD) .
.SECONDARY:
