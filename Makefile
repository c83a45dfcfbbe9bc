# fatune: FlashAttention kernels generated from Lua templates, compiled with NVRTC, tuned per GPU.
#
#   make            build fatune (Lua and SQLite linked statically)
#   make test       install missing build dependencies, build, run the CPU test tier
#   make gpu-test   the GPU test tier (skips, with a count, where there is no GPU)
#   make run        fatune --gpu 0 on the default suite (compile-only check without a GPU)
#   make SAN=address,undefined test     sanitizer build;  V=1 shows full commands; WERROR=1 in CI

CC        ?= cc
CUDA_HOME ?= /usr/local/cuda
BUILD     ?= build
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

ifeq ($(V),1)
Q =
else
Q = @
endif

# The Lua that travels inside the binary: every template and the generator's host code.
LUA_FILES = $(sort $(wildcard templates/*.lua templates/lib/*.lua)) generator/host.lua generator/default_shapes.lua

LIB_SRC = runtime/status.c runtime/args.c runtime/half.c runtime/cpu_attn.c runtime/cu.c runtime/rtc.c \
          runtime/kernel.c generator/gen.c db/db.c
TUNER_SRC = tuner/pool.c tuner/check.c tuner/bench.c tuner/worker.c tuner/tune.c
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/embedded.o
TUNER_OBJ = $(TUNER_SRC:%.c=$(BUILD)/%.o)
TESTS = test_gen test_db test_cpu_attn test_rtc

.PHONY: all test gpu-test run deps clean
all: $(BUILD)/fatune

$(BUILD)/embed: tools/embed.c
	@mkdir -p $(@D)
	@echo "HOSTCC $<"
	$(Q)$(CC) -O1 -o $@ $<

$(BUILD)/embedded.c: $(BUILD)/embed $(LUA_FILES)
	@echo "EMBED $(words $(LUA_FILES)) Lua files"
	$(Q)$(BUILD)/embed $@ $(LUA_FILES)

$(BUILD)/%.o: %.c $(wildcard runtime/*.h generator/*.h db/*.h tuner/*.h)
	@mkdir -p $(@D)
	@echo "CC $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/embedded.o: $(BUILD)/embedded.c generator/embedded.h
	@echo "CC $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libfatune.a: $(LIB_OBJ)
	@echo "AR $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/fatune: $(BUILD)/tuner/main.o $(TUNER_OBJ) $(BUILD)/libfatune.a
	@echo "LINK $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/test_%: $(BUILD)/tests/test_%.o $(TUNER_OBJ) $(BUILD)/libfatune.a
	@echo "LINK $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/gpu_test: $(BUILD)/tests/gpu_test.o $(TUNER_OBJ) $(BUILD)/libfatune.a
	@echo "LINK $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

deps:
	@sh tools/deps.sh

# `make test` must work on a fresh machine: install what is missing first, then build in a
# second make so that the pkg-config look-ups above see the new packages.
test: deps
	@$(MAKE) --no-print-directory test-build
	@sh tests/run.sh $(BUILD) $(TESTS) cli

.PHONY: test-build
test-build: $(BUILD)/fatune $(TESTS:%=$(BUILD)/%)

gpu-test: $(BUILD)/fatune $(BUILD)/gpu_test
	@sh tests/run.sh $(BUILD) gpu_test gpu_tune

run: deps
	@$(MAKE) --no-print-directory $(BUILD)/fatune
	$(BUILD)/fatune --gpu 0 --or-check

clean:
	rm -rf $(BUILD)
.SECONDARY:
