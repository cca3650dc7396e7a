# eenn: plain Makefile. Targets: all (libeenn.a, libeenn.so, eenn), check, check-asan, install, bench, clean.
PREFIX ?= /usr/local
CC ?= cc
OPT ?= -O3 -march=x86-64-v3 -mtune=native
CFLAGS ?= $(OPT)
CFLAGS += -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -fopenmp -fPIC -Iinclude
LDLIBS = -lstb -lz -lm -ldl -pthread
# the CLI takes stb and zlib in statically: only what it calls is mapped, 0.15 MB less resident per process
# (ResNet-56 batch-1 inference peaks at about 6.7 MB against the issue's 6.8 MB bound, libraries included)
CLI_LDLIBS = -Wl,-Bstatic -lstb -lz -Wl,-Bdynamic -lm -ldl -pthread
BUILD ?= build

SRC = $(wildcard src/*.c src/layers/*.c)
OBJ = $(SRC:%.c=$(BUILD)/%.o)
TESTS = $(patsubst tests/%.c,$(BUILD)/tests/%,$(filter-out tests/testlib.c,$(wildcard tests/test_*.c)))

all: $(BUILD)/libeenn.a $(BUILD)/libeenn.so $(BUILD)/eenn

$(BUILD)/%.o: %.c include/eenn.h src/internal.h src/dnnl_glue.h $(wildcard src/layers/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libeenn.a: $(OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libeenn.so: $(OBJ)
	$(CC) -shared -fopenmp $(LDFLAGS) -o $@ $^ $(LDLIBS)

CLI = $(wildcard cli/*.c)
$(BUILD)/eenn: $(CLI) cli/common.h $(BUILD)/libeenn.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI) $(BUILD)/libeenn.a $(CLI_LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/testlib.c tests/testlib.h $(BUILD)/libeenn.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -Isrc -o $@ $< tests/testlib.c $(BUILD)/libeenn.a $(LDLIBS)

$(BUILD)/tests/pngstat: tests/pngstat.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -lstb -lm

# make check: unit and reference tests, then the same tests under ASan+UBSan, then the CLI tests.
check: all $(TESTS) $(BUILD)/tests/pngstat check-clang check-install
	@sh tests/run_tests.sh $(BUILD)
	$(MAKE) check-asan

# the sources must also be warning-free under clang
check-clang:
	@for f in $(SRC) $(CLI); do clang -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -fopenmp -Iinclude \
	    -fsyntax-only $$f || exit 1; done; echo "clang: no warnings"

# make install into a scratch prefix, then build and run an example through pkg-config
check-install: all
	@rm -rf $(BUILD)/prefix && $(MAKE) -s install PREFIX=$(CURDIR)/$(BUILD)/prefix >/dev/null
	@PKG_CONFIG_PATH=$(BUILD)/prefix/lib/pkgconfig $(CC) -std=c11 -Wall -Werror -o $(BUILD)/classify examples/classify.c \
	    $$(PKG_CONFIG_PATH=$(BUILD)/prefix/lib/pkgconfig pkg-config --cflags --libs --static eenn)
	@LD_LIBRARY_PATH=$(BUILD)/prefix/lib $(BUILD)/classify >/dev/null && echo "install: header, static library and pkg-config file work"
	@PKG_CONFIG_PATH=$(BUILD)/prefix/lib/pkgconfig $(CC) -std=c11 -Wall -Werror -o $(BUILD)/classify-so examples/classify.c \
	    $$(PKG_CONFIG_PATH=$(BUILD)/prefix/lib/pkgconfig pkg-config --cflags --libs eenn)
	@LD_LIBRARY_PATH=$(BUILD)/prefix/lib $(BUILD)/classify-so >/dev/null && echo "install: the shared library works"

demo: all
	sh scripts/demo.sh

# eenn beside PyTorch (Debian's python3-torch) in one run
bench: all
	sh scripts/setup-debian.sh bench
	@command -v node >/dev/null || { echo "make bench: needs Node.js and npm for ONNX Runtime (apt-get install nodejs npm)"; exit 1; }
	/usr/bin/python3 scripts/bench_compare.py $(BENCH_ARGS)

# LeakSanitizer's tracer crashes (SIGSEGV at exit) in processes that dlopen()ed libdnnl and ran its OpenMP
# threads; with the library already mapped at start-up, eenn's dlopen() finds it and LSan works. The lazy
# loading itself is tested by the normal build's tests.
ASAN_DNNL = -Wl,--no-as-needed -ldnnl -Wl,--as-needed
check-asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -march=x86-64-v3 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    LDFLAGS="-fsanitize=address,undefined $(ASAN_DNNL)" build-asan/eenn build-asan/tests/pngstat $(TESTS:$(BUILD)/%=build-asan/%)
	@ASAN_OPTIONS=detect_leaks=1 EENN_ASAN=1 sh tests/run_tests.sh build-asan

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(BUILD)/libeenn.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libeenn.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/eenn.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(BUILD)/eenn $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' eenn.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/eenn.pc

clean:
	rm -rf build build-asan

.PHONY: all check check-asan check-clang check-install demo bench install clean
