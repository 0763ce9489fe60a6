# gemma4.c build. Plain `make` builds ./gemma4 for any CPU of this
# architecture: per-ISA kernel files get their own target flags and are
# chosen at run time, so nothing here uses -march=native.

MAKEFLAGS += -r
CC      ?= cc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
ALL_CFLAGS = $(CFLAGS) -std=c11 -Wall -Wextra -D_GNU_SOURCE -I.
LDLIBS  += -lpthread -lm
BUILD   ?= build
RUN     ?=
FUZZ_SECONDS ?= 60

ARCH := $(shell $(CC) -dumpmachine | cut -d- -f1)

LIB_SRC   := gemma4.c load.c session.c kvcache.c sampler.c $(wildcard gguf/*.c tokenizer/*.c kernels/*.c)
X86_SRC   := $(wildcard kernels/x86/*.c)
ARM_SRC   := $(wildcard kernels/arm/*.c)
ifeq ($(ARCH),x86_64)
LIB_SRC   += $(X86_SRC)
else ifeq ($(ARCH),aarch64)
LIB_SRC   += $(ARM_SRC)
endif
# tools/bench/bench_kernels.c is a program of its own (make bench-kernels).
CLI_SRC   := $(filter-out tools/bench/bench_kernels.c,$(wildcard tools/*.c tools/*/*.c))
TEST_SRC  := $(wildcard tests/test_*.c)
FUZZ_SRC  := $(wildcard tests/fuzz_*.c)
HDRS      := $(wildcard *.h gguf/*.h tokenizer/*.h kernels/*.h kernels/*/*.h tools/*.h tools/*/*.h tests/*.h)

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIB       := $(BUILD)/libgemma4.a

# Each ISA file is compiled for its own target; the dispatcher only calls it
# when the CPU reports the features.
AVX2_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard kernels/x86/avx2*.c))
$(AVX2_OBJ): ISAFLAGS := -mavx2 -mfma -mf16c
$(BUILD)/kernels/x86/avx512.o: ISAFLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mfma -mf16c
DOTPROD_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard kernels/arm/dotprod*.c))
$(DOTPROD_OBJ): ISAFLAGS := -march=armv8.2-a+dotprod

.PHONY: all test test-bins werror asan static fuzz fuzz-run neon-test check bench bench-kernels clean
all: gemma4

gemma4: $(BUILD)/gemma4
	cp $< $@

$(BUILD)/gemma4: $(CLI_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(LIB): $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ISAFLAGS) -c -o $@ $<

# Tests link the library and the CLI objects (minus main) so command
# implementations can be tested in-process too.
CLI_NOMAIN := $(filter-out $(BUILD)/tools/main.o,$(CLI_OBJ))
$(BUILD)/tests/%: tests/%.c $(HDRS) $(LIB) $(CLI_NOMAIN)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(CLI_NOMAIN) $(LIB) $(LDLIBS)

test-bins: $(TEST_BIN) $(BUILD)/gemma4 $(BUILD)/tools/bench/bench_kernels

# -Wall -Wextra clean with both compilers, tests included.
werror:
	$(MAKE) BUILD=build/werror-gcc CC=gcc CFLAGS="-O2 -Werror" test-bins
	$(MAKE) BUILD=build/werror-clang CC=clang CFLAGS="-O2 -Werror" test-bins

# The server's end-to-end test drives the native binary over loopback, so it
# is left out of the qemu run.
test: $(TEST_BIN) $(BUILD)/gemma4
	GEMMA4_BIN=$(BUILD)/gemma4 RUN="$(RUN)" sh tests/run.sh $(TEST_BIN) $(if $(RUN),,tests/test_server.sh)

# ASan + UBSan build of everything, then the whole test suite.
asan:
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=address,undefined" test

# A fully static binary (musl) that runs on a machine with nothing installed.
static:
	$(MAKE) BUILD=build/static CC=musl-gcc LDFLAGS=-static build/static/gemma4
	cp build/static/gemma4 gemma4-static

# libFuzzer targets (clang), each linked against an instrumented library.
FUZZ_BIN := $(FUZZ_SRC:tests/%.c=build/fuzz/%)
fuzz:
	$(MAKE) BUILD=build/fuzz CC=clang \
	  CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
	  build/fuzz/libgemma4.a
	@for s in $(FUZZ_SRC); do \
	  b=build/fuzz/$$(basename $$s .c); \
	  echo "clang $$s -> $$b"; \
	  clang -std=c11 -D_GNU_SOURCE -I. -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -o $$b $$s build/fuzz/libgemma4.a -lpthread -lm || exit 1; \
	done

fuzz-run: fuzz
	sh tests/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BIN)

# aarch64 build with the cross compiler, run under qemu-user: the kernels
# against the scalar reference, and the fixture logits through the NEON
# kernels. (The rest is architecture-neutral and runs natively above; the 32K
# context test alone would take most of CI's time under emulation.)
NEON_TESTS := test_kernels test_formats test_logits test_generate test_model
neon-test:
	$(MAKE) BUILD=build/aarch64 CC=aarch64-linux-gnu-gcc LDFLAGS=-static \
	  RUN=qemu-aarch64 TEST_SRC="$(NEON_TESTS:%=tests/%.c)" test

# Everything CI runs.
check: werror test asan static fuzz-run neon-test
	sh tests/static_smoke.sh ./gemma4-static

# The kernel microbenchmark: a standalone program on the library, like the
# tests. BENCH_KERNELS_ARGS restricts it (see --help).
$(BUILD)/tools/bench/bench_kernels: tools/bench/bench_kernels.c $(HDRS) $(LIB) $(BUILD)/tools/bench/membw.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/tools/bench/membw.o $(LIB) $(LDLIBS)

bench-kernels: $(BUILD)/tools/bench/bench_kernels
	$(BUILD)/tools/bench/bench_kernels $(BENCH_KERNELS_ARGS)

# Sequential on purpose: two benchmarks at once would halve each other.
bench: gemma4 $(BUILD)/tools/bench/bench_kernels
	$(BUILD)/tools/bench/bench_kernels $(BENCH_KERNELS_ARGS)
	sh tools/bench/bench.sh

clean:
	rm -rf build gemma4 gemma4-static
