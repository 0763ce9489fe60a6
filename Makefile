# gemma4.c build. Plain `make` builds ./gemma4 for any CPU of this
# architecture: per-ISA kernel files get their own target flags and are
# chosen at run time, so nothing here uses -march=native.

MAKEFLAGS += -r
CC      ?= cc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
ALL_CFLAGS = $(CFLAGS) -std=c11 -Wall -Wextra -Wvla -D_GNU_SOURCE -I.
LDLIBS  += -lpthread -lm
BUILD   ?= build
RUN     ?=
FUZZ_SECONDS ?= 30

ARCH := $(shell $(CC) -dumpmachine | cut -d- -f1)

LIB_SRC   := gemma4.c load.c session.c kvcache.c sampler.c speculative.c drafter.c drafter_load.c error.c text.c $(wildcard gguf/*.c tokenizer/*.c kernels/*.c)
X86_SRC   := $(wildcard kernels/x86/*.c)
ARM_SRC   := $(wildcard kernels/arm/*.c)
ifeq ($(ARCH),x86_64)
LIB_SRC   += $(X86_SRC)
else ifeq ($(ARCH),aarch64)
LIB_SRC   += $(ARM_SRC)
endif
# tools/bench/bench_kernels.c and bench_grammar.c are programs of their own
# (make bench-kernels, make bench-grammar).
CLI_SRC   := $(filter-out tools/bench/bench_kernels.c tools/bench/bench_grammar.c,$(wildcard tools/*.c tools/*/*.c))
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
AVX512_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard kernels/x86/avx512*.c))
$(AVX512_OBJ): ISAFLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mfma -mf16c
DOTPROD_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard kernels/arm/dotprod*.c))
$(DOTPROD_OBJ): ISAFLAGS := -march=armv8.2-a+dotprod

.PHONY: all test test-bins werror asan static fuzz fuzz-run neon-test check bench bench-kernels bench-grammar install clean
all: gemma4

gemma4: $(BUILD)/gemma4
	cp $< $@

$(BUILD)/gemma4: $(CLI_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(LIB): $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

# The library objects are position-independent, so one set makes both the
# archive and the shared library (measured: kernels within 2% of non-PIC,
# inside the run-to-run noise).
$(LIB_OBJ): ALL_CFLAGS += -fPIC

# The shared library exports the public API (gemma4.h) and nothing else.
$(BUILD)/libgemma4.so: $(LIB_OBJ)
	printf '{ global: gemma4_*; local: *; };\n' > $(BUILD)/libgemma4.map
	$(CC) -shared $(LDFLAGS) -Wl,--version-script=$(BUILD)/libgemma4.map -o $@ $^ $(LDLIBS)

# The embedding example, built from gemma4.h and the library alone.
$(BUILD)/examples/simple: examples/simple.c gemma4.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=c11 -pedantic -Wall -Wextra -I. $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# make install [PREFIX=/usr/local] [DESTDIR=staging root]: the binary, both
# libraries, the header and a pkg-config file.
PREFIX  ?= /usr/local
VERSION := 0.1.0
$(BUILD)/tools/cli.o: ALL_CFLAGS += -DG4_VERSION='"$(VERSION)"'
install: $(BUILD)/gemma4 $(LIB) $(BUILD)/libgemma4.so
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(BUILD)/gemma4 $(DESTDIR)$(PREFIX)/bin/gemma4
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/libgemma4.a
	install -m 755 $(BUILD)/libgemma4.so $(DESTDIR)$(PREFIX)/lib/libgemma4.so
	install -m 644 gemma4.h $(DESTDIR)$(PREFIX)/include/gemma4.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' gemma4.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/gemma4.pc

$(BUILD)/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ISAFLAGS) -c -o $@ $<

# Tests link the library and the CLI objects (minus main) so command
# implementations can be tested in-process too.
CLI_NOMAIN := $(filter-out $(BUILD)/tools/main.o,$(CLI_OBJ))
$(BUILD)/tests/%: tests/%.c $(HDRS) $(LIB) $(CLI_NOMAIN)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(CLI_NOMAIN) $(LIB) $(LDLIBS)

# The AVX-512 kernel files once more, for plain x86-64 against SIMDe
# (libsimde-dev: portable C versions of the intrinsics, kernels/x86/simd.h),
# in a test-only binary, so that their bit-exactness tests run on any CPU.
# Linked ahead of the library, these objects define every symbol of its
# native AVX-512 ones, which therefore stay out. Unoptimised, with SIMDe's
# functions out of line: inlined and optimised, the unrolled tiles take the
# compiler minutes. (-Wno-psabi: without AVX-512, 512-bit vector values
# are passed differently, which GCC notes; only pointers cross between
# objects.) Without the headers there is no such binary (test_kernels says so).
ifeq ($(ARCH),x86_64)
ifeq ($(shell $(CC) -E -x c -include simde/x86/avx512.h /dev/null > /dev/null 2>&1 && echo yes),yes)
SIMDE_OBJ := $(patsubst %.c,$(BUILD)/simde/%.o,$(wildcard kernels/x86/avx512*.c))
TEST_BIN  += $(BUILD)/tests/test_kernels_simde
endif
endif
$(BUILD)/simde/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -O0 -DG4_SIMDE -DSIMDE_NO_INLINE -Wno-psabi -c -o $@ $<
$(BUILD)/tests/test_kernels_simde: tests/test_kernels.c $(HDRS) $(SIMDE_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DG4_SIMDE $(LDFLAGS) -o $@ $< $(SIMDE_OBJ) $(LIB) $(LDLIBS)

test-bins: $(TEST_BIN) $(BUILD)/gemma4 $(BUILD)/tools/bench/bench_kernels $(BUILD)/examples/simple

# -Wall -Wextra clean with both compilers, tests included.
werror:
	$(MAKE) BUILD=build/werror-gcc CC=gcc CFLAGS="-O2 -Werror" test-bins
	$(MAKE) BUILD=build/werror-clang CC=clang CFLAGS="-O2 -Werror" test-bins

# tests/run.sh first assembles the fixture root in $(BUILD)/fixtures
# (tests/data plus the models $(BUILD)/gemma4 regenerates, all checksummed).
# The server's end-to-end test drives the native binary over loopback and the
# repository check is architecture-neutral, so both are left out of the qemu run.
test: $(TEST_BIN) $(BUILD)/gemma4 $(if $(RUN),,$(BUILD)/libgemma4.so $(BUILD)/examples/simple)
	GEMMA4_BIN=$(BUILD)/gemma4 FIXTURES_DIR=$(BUILD)/fixtures RUN="$(RUN)" \
	  sh tests/run.sh $(TEST_BIN) $(if $(RUN),,tests/test_cli.sh tests/test_server.sh tests/test_repo.sh \
	  tests/test_example.sh tests/test_symbols.sh tests/test_install.sh)

# ASan + UBSan build of everything, then the whole test suite.
asan:
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=address,undefined" test

# A fully static binary (musl) that runs on a machine with nothing installed.
static:
	$(MAKE) BUILD=build/static CC=musl-gcc LDFLAGS=-static build/static/gemma4
	cp build/static/gemma4 gemma4-static

# libFuzzer targets (clang), each linked against an instrumented library
# and the server's request reader and parser (tools/, not in the library).
FUZZ_BIN := $(FUZZ_SRC:tests/%.c=build/fuzz/%)
FUZZ_TOOLS := $(patsubst %.c,build/fuzz/%.o,tools/json_write.c tools/serve/http.c tools/serve/openai.c \
  tools/synth/cmd_mkmodel.c tools/synth/model_shapes.c tools/synth/synth_vocab.c tools/synth/synth_weights.c)
fuzz:
	$(MAKE) BUILD=build/fuzz CC=clang \
	  CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
	  build/fuzz/libgemma4.a $(FUZZ_TOOLS)
	@for s in $(FUZZ_SRC); do \
	  b=build/fuzz/$$(basename $$s .c); \
	  echo "clang $$s -> $$b"; \
	  clang -std=c11 -D_GNU_SOURCE -I. -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -o $$b $$s $(FUZZ_TOOLS) build/fuzz/libgemma4.a -lpthread -lm || exit 1; \
	done

# The GGUF fuzzer's seeds are models written by $(BUILD)/gemma4 mkmodel.
fuzz-run: fuzz $(BUILD)/gemma4
	GEMMA4_BIN=$(BUILD)/gemma4 sh tests/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BIN)

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

# The grammar matcher on the real vocabulary (unpacked by tests/fixtures.sh).
$(BUILD)/tools/bench/bench_grammar: tools/bench/bench_grammar.c $(HDRS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

bench-grammar: $(BUILD)/tools/bench/bench_grammar
	$(BUILD)/tools/bench/bench_grammar $(BENCH_GRAMMAR_ARGS)

# Sequential on purpose: two benchmarks at once would halve each other.
bench: gemma4 $(BUILD)/tools/bench/bench_kernels
	$(BUILD)/tools/bench/bench_kernels $(BENCH_KERNELS_ARGS)
	sh tools/bench/bench.sh

clean:
	rm -rf build gemma4 gemma4-static
