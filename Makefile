# eenn: plain Makefile. Targets: all (libeenn.a, libeenn.so, eenn), check, check-asan, check-generic, install,
# bench, clean.
# The build runs on any x86-64 CPU: the AVX2 + FMA kernels are compiled for those instructions on their own and
# chosen at run time. NO_AVX2=1 leaves them out (the generic paths only).
PREFIX ?= /usr/local
CC ?= cc
OPT ?= -O3 -mtune=native
# CROSS=aarch64-linux-gnu-: a cross build (Debian's gcc-aarch64-linux-gnu and the :arm64 -dev packages) into its
# own build directory; `make check-aarch64` runs its tests under qemu-user. The generic kernels, no MPI.
ifdef CROSS
CC = $(CROSS)gcc
OPT = -O3
MPI = 0
NO_MATIO = 1
BUILD ?= build-$(CROSS:%-=%)
# gcc 12 for aarch64 stops with an internal error vectorising some of the tests' max reductions; the tests need no
# vector code (the library itself is built as usual)
TEST_CFLAGS = -fno-tree-vectorize
endif
TARGET_MACHINE := $(shell $(CC) -dumpmachine)
CFLAGS ?= $(OPT)
CFLAGS += -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -fopenmp -fPIC -Iinclude \
	-fvisibility=hidden -DEE_BUILDING_LIBRARY
ifeq ($(NO_AVX2),1)
CFLAGS += -DEE_NO_AVX2
endif
# the direct convolution kernel alone is compiled for AVX2 + FMA (x86-64); dconv_cpu.c decides at run time
DCONV_FLAGS =
ifneq ($(findstring x86_64,$(TARGET_MACHINE)),)
ifneq ($(NO_AVX2),1)
DCONV_FLAGS = -mavx2 -mfma
endif
endif
# NO_CURL=1: without libcurl (no edge client: ee_remote_open fails with a message)
ifeq ($(NO_CURL),1)
CFLAGS += -DEE_NO_CURL
CURL_LIB =
else
CURL_LIB = -lcurl
endif
# NO_MATIO=1: without libmatio (no SVHN loader; Debian's libmatio-dev is not multi-arch, so cross builds go without)
ifeq ($(NO_MATIO),1)
CFLAGS += -DEE_NO_MATIO
MATIO_LIB =
else
MATIO_LIB = -lmatio
endif
LDLIBS = $(MATIO_LIB) -lstb -lz $(CURL_LIB) -lm -ldl -pthread
# the CLI takes stb and zlib in statically: only what it calls is mapped, 0.15 MB less resident per process;
# libmicrohttpd is the server of `eenn serve`
CLI_LDLIBS = -Wl,-Bstatic -lstb -lz -Wl,-Bdynamic $(MATIO_LIB) -lmicrohttpd $(CURL_LIB) -lm -ldl -pthread
# MPI: data-parallel training in the CLI (mpirun -np N eenn train); on by default where pkg-config finds Open MPI,
# MPI=0 leaves it out. The library itself never links MPI.
MPI ?= $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1 || echo 0)
ifeq ($(MPI),1)
MPI_CFLAGS = -DEE_MPI $(shell pkg-config --cflags ompi-c)
MPI_LIBS = $(shell pkg-config --libs ompi-c)
endif
BUILD ?= build
SOVERSION = 0
VERSION = 0.1.0

SRC = $(wildcard src/*.c src/layers/*.c)
OBJ = $(SRC:%.c=$(BUILD)/%.o)
TESTS = $(patsubst tests/%.c,$(BUILD)/tests/%,$(filter-out tests/testlib.c,$(wildcard tests/test_*.c)))

all: $(BUILD)/libeenn.a $(BUILD)/libeenn.so $(BUILD)/eenn

$(BUILD)/%.o: %.c include/eenn.h src/internal.h src/dnnl_glue.h $(wildcard src/layers/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(if $(findstring dconv.c,$<),$(DCONV_FLAGS)) -c $< -o $@

$(BUILD)/libeenn.a: $(OBJ)
	rm -f $@ && ar rcs $@ $^

# the shared library: libeenn.so.$(VERSION) with the SONAME libeenn.so.$(SOVERSION), and the two links to it
$(BUILD)/libeenn.so: $(OBJ)
	$(CC) -shared -fopenmp -Wl,-soname,libeenn.so.$(SOVERSION) $(LDFLAGS) -o $@.$(VERSION) $^ $(LDLIBS)
	ln -sf libeenn.so.$(VERSION) $@.$(SOVERSION)
	ln -sf libeenn.so.$(VERSION) $@

CLI = $(wildcard cli/*.c)
$(BUILD)/eenn: $(CLI) cli/common.h cli/http.h $(BUILD)/libeenn.a
	$(CC) $(CFLAGS) $(MPI_CFLAGS) -DEE_DATADIR='"$(PREFIX)/share/eenn"' $(LDFLAGS) -o $@ $(CLI) $(BUILD)/libeenn.a \
	    $(CLI_LDLIBS) $(MPI_LIBS)

$(BUILD)/tests/%: tests/%.c tests/testlib.c tests/testlib.h $(BUILD)/libeenn.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) $(LDFLAGS) -Isrc -o $@ $< tests/testlib.c $(BUILD)/libeenn.a $(LDLIBS)

$(BUILD)/tests/modeldiff: tests/modeldiff.c $(BUILD)/libeenn.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libeenn.a $(LDLIBS)

$(BUILD)/tests/pngstat: tests/pngstat.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -lstb -lm

# make check-aarch64: the library's unit tests built for aarch64 (CROSS=aarch64-linux-gnu-) and run under qemu-user;
# needs gcc-aarch64-linux-gnu, qemu-user and the :arm64 packages of zlib1g-dev, libstb-dev, libcurl4-openssl-dev,
# libmicrohttpd-dev and libdnnl2 (README, "ARM"). Not part of make check: emulated, the tests take a long time.
# Under Debian 12's qemu-user (7.2) on the machines tested, a second thread of the emulated program never runs (a
# two-thread pthread or OpenMP program hangs), so the tests run on one OpenMP thread (OMP_THREAD_LIMIT=1) and
# test_parallel, whose ranks are threads, is left out (EENN_SKIP).
AARCH64_BUILD = build-aarch64-linux-gnu
check-aarch64:
	$(MAKE) CROSS=aarch64-linux-gnu- all $(patsubst $(BUILD)/%,$(AARCH64_BUILD)/%,$(TESTS))
	@QEMU_LD_PREFIX=/usr/aarch64-linux-gnu OMP_THREAD_LIMIT=1 EENN_RUNNER=qemu-aarch64 EENN_NO_CLI=1 \
	    EENN_SKIP=test_parallel sh tests/run_tests.sh $(AARCH64_BUILD)

# make check: unit, reference and CLI tests; the exported symbols; the library tests again on a build without the
# AVX2 kernels; everything again under ASan+UBSan; a short run of each fuzzer.
check: all $(TESTS) $(BUILD)/tests/pngstat $(BUILD)/tests/modeldiff check-clang check-install check-symbols
	@sh tests/run_tests.sh $(BUILD)
	$(MAKE) check-generic
	$(MAKE) check-asan
	$(MAKE) fuzz-smoke

# the shared library exports the functions eenn.h declares and nothing else, under its SONAME
check-symbols: $(BUILD)/libeenn.so
	@nm -D --defined-only $(BUILD)/libeenn.so | awk '{print $$3}' | sort > $(BUILD)/exported.txt
	@grep -o '\bee_[a-z0-9_]*(' include/eenn.h | tr -d '(' | sort -u > $(BUILD)/declared.txt
	@bad=$$(comm -23 $(BUILD)/exported.txt $(BUILD)/declared.txt); \
	    [ -z "$$bad" ] || { echo "libeenn.so exports symbols eenn.h does not declare:"; echo "$$bad"; exit 1; }
	@readelf -d $(BUILD)/libeenn.so | grep -q 'SONAME.*libeenn.so.$(SOVERSION)' || { echo "no SONAME"; exit 1; }
	@echo "libeenn.so: exports the $$(wc -l < $(BUILD)/exported.txt) functions of eenn.h only, SONAME libeenn.so.$(SOVERSION)"

# the library tests on a build without the AVX2 kernels: the generic code paths any x86-64 CPU takes
check-generic:
	$(MAKE) BUILD=build-generic NO_AVX2=1 $(TESTS:$(BUILD)/%=build-generic/%)
	@EENN_NO_CLI=1 sh tests/run_tests.sh build-generic

# the sources must also compile warning-free under clang (code generation too: target-specific vector code)
check-clang:
	@for f in $(SRC) $(CLI); do clang -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -fopenmp -Iinclude \
	    $$(case $$f in */dconv.c) echo $(DCONV_FLAGS);; esac) -c -o /dev/null $$f || exit 1; done; echo "clang: no warnings"

# make install into a scratch prefix, then build and run an example through pkg-config
check-install: all
	@rm -rf $(BUILD)/prefix && $(MAKE) -s install PREFIX=$(CURDIR)/$(BUILD)/prefix >/dev/null
	@PKG_CONFIG_PATH=$(BUILD)/prefix/lib/pkgconfig $(CC) -std=c11 -Wall -Werror -o $(BUILD)/classify examples/classify.c \
	    $$(PKG_CONFIG_PATH=$(BUILD)/prefix/lib/pkgconfig pkg-config --cflags --libs --static eenn)
	@LD_LIBRARY_PATH=$(BUILD)/prefix/lib $(BUILD)/classify >/dev/null && echo "install: header, static library and pkg-config file work"
	@PKG_CONFIG_PATH=$(BUILD)/prefix/lib/pkgconfig $(CC) -std=c11 -Wall -Werror -o $(BUILD)/classify-so examples/classify.c \
	    $$(PKG_CONFIG_PATH=$(BUILD)/prefix/lib/pkgconfig pkg-config --cflags --libs eenn)
	@LD_LIBRARY_PATH=$(BUILD)/prefix/lib $(BUILD)/classify-so >/dev/null && echo "install: the shared library works"
	@test -f $(BUILD)/prefix/share/man/man1/eenn.1 && { ! command -v groff >/dev/null || \
	    ! groff -man -ww -z $(BUILD)/prefix/share/man/man1/eenn.1 2>&1 | grep .; } && echo "install: the man page is in place"

demo: all
	sh scripts/demo.sh

# eenn beside PyTorch (Debian's python3-torch) in one run
bench: all
	sh scripts/setup-debian.sh bench
	@command -v node >/dev/null || { echo "make bench: needs Node.js and npm for ONNX Runtime (apt-get install nodejs npm)"; exit 1; }
	/usr/bin/python3 scripts/bench_compare.py $(BENCH_ARGS)
	/usr/bin/python3 scripts/int8_bench.py

# int8 with early exits against fp32 and PyTorch's int8 (docs/int8.md): medians of 5 alternating rounds
bench-int8: all
	sh scripts/setup-debian.sh bench
	/usr/bin/python3 scripts/int8_bench.py $(BENCH_ARGS)

# LeakSanitizer's tracer crashes (SIGSEGV at exit) in processes that dlopen()ed libdnnl and ran its OpenMP
# threads; with the library already mapped at start-up, eenn's dlopen() finds it and LSan works. The lazy
# loading itself is tested by the normal build's tests.
ASAN_DNNL = -Wl,--no-as-needed -ldnnl -Wl,--as-needed
check-asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    LDFLAGS="-fsanitize=address,undefined $(ASAN_DNNL)" build-asan/eenn build-asan/tests/pngstat build-asan/tests/modeldiff $(TESTS:$(BUILD)/%=build-asan/%)
	@ASAN_OPTIONS=detect_leaks=1 EENN_ASAN=1 sh tests/run_tests.sh build-asan

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(BUILD)/libeenn.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libeenn.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libeenn.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libeenn.so.$(SOVERSION)
	ln -sf libeenn.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libeenn.so
	install -m 644 include/eenn.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(BUILD)/eenn $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 eenn.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -d $(DESTDIR)$(PREFIX)/share/eenn
	install -m 644 scripts/eenn_export.py scripts/eenn_torch.py scripts/eenn_file.py $(DESTDIR)$(PREFIX)/share/eenn/
	sed -e 's|@PREFIX@|$(PREFIX)|' eenn.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/eenn.pc

# libFuzzer (clang): the model reader, the architecture text (with its round trip), the dataset readers and the
# server's request format.
# make fuzz FUZZ_SECONDS=600 runs each that long from the seeds in tests/fuzz/corpus; make fuzz-smoke runs each
# briefly with a fixed seed (part of make check). New inputs go to build-fuzz/corpus, crashes to build-fuzz/.
FUZZ_SECONDS ?= 600
FUZZERS = model arch data wire
FUZZ_FLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -g -O1 -fopenmp -Iinclude -fvisibility=hidden \
	-DEE_BUILDING_LIBRARY -fsanitize=address,undefined -fno-sanitize-recover=all
build-fuzz/libeenn.a: $(SRC) include/eenn.h src/internal.h src/dnnl_glue.h
	@mkdir -p build-fuzz
	rm -f $@ && for f in $(SRC); do clang $(FUZZ_FLAGS) $$(case $$f in */dconv.c) echo $(DCONV_FLAGS);; esac) -fsanitize=fuzzer-no-link -c $$f \
	    -o build-fuzz/$$(echo $$f | tr / _).o || exit 1; done && ar rcs $@ build-fuzz/*.o
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c build-fuzz/libeenn.a
	clang $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< build-fuzz/libeenn.a $(LDLIBS)
fuzz: $(FUZZERS:%=build-fuzz/fuzz_%)
	@for z in $(FUZZERS); do mkdir -p build-fuzz/corpus/$$z && echo "fuzz_$$z: $(FUZZ_SECONDS) s" && \
	    ASAN_OPTIONS=detect_leaks=1 build-fuzz/fuzz_$$z -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build-fuzz/ \
	    -print_final_stats=1 build-fuzz/corpus/$$z tests/fuzz/corpus/$$z 2>&1 | grep -E "^stat::number_of_executed_units|ERROR|SUMMARY" \
	    || exit 1; done
fuzz-smoke: $(FUZZERS:%=build-fuzz/fuzz_%)
	@for z in $(FUZZERS); do rm -rf build-fuzz/smoke/$$z && mkdir -p build-fuzz/smoke/$$z && \
	    ASAN_OPTIONS=detect_leaks=1 build-fuzz/fuzz_$$z -seed=1 -runs=3000 -max_total_time=30 \
	    -artifact_prefix=build-fuzz/ build-fuzz/smoke/$$z tests/fuzz/corpus/$$z >build-fuzz/smoke_$$z.log 2>&1 && \
	    echo "fuzz_$$z: $$(grep -o 'Done [0-9]* runs' build-fuzz/smoke_$$z.log) without a failure" || \
	    { tail -30 build-fuzz/smoke_$$z.log; exit 1; }; done

clean:
	rm -rf build build-asan build-generic build-fuzz

.PHONY: bench-int8 check-aarch64 all check check-asan check-clang check-generic check-install check-symbols demo bench install clean fuzz fuzz-smoke
