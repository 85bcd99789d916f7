# stargzd — see README.md.  `make` builds, `make check` installs deps, builds and runs every test,
# `make run` starts the daemon in the foreground with the default root and socket.

VERSION := 0.1.0
PREFIX  ?= /usr/local

CC      ?= cc
BUILD   ?= build
# SANITIZE=1 builds into $(BUILD) with ASan+UBSan (used by `make check` as build-asan/).
SANITIZE ?=

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
CFLAGS_COMMON := -std=gnu11 -g -pipe -fPIE -fstack-protector-strong $(WARN) \
           -D_GNU_SOURCE -DSTARGZD_VERSION='"$(VERSION)"' \
           -I. -I$(BUILD)/proto -I/usr/include/bearssl $(shell pkg-config --cflags fuse3 2>/dev/null)
ifeq ($(FUZZ),1)
  # libFuzzer build (clang): the library is instrumented for coverage, the targets link the driver.
  CFLAGS_OPT := -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
  LDFLAGS_SAN := -fsanitize=fuzzer,address,undefined
else ifeq ($(SANITIZE),1)
  CFLAGS_OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS_SAN := -fsanitize=address,undefined
else
  CFLAGS_OPT := -O2 -D_FORTIFY_SOURCE=2
  LDFLAGS_SAN :=
endif
CFLAGS  ?=
CFLAGS  += $(CFLAGS_COMMON) $(CFLAGS_OPT)
LDFLAGS += -pie -Wl,-z,relro,-z,now -Wl,--as-needed $(LDFLAGS_SAN)
LDLIBS  := -luring -lfuse3 -ldeflate -lbearssl -lprotobuf-c -lnghttp2 -lsqlite3 -lnettle -lyajl -lz -lpthread

# Library code: everything but daemon/main.c.  Dependencies point one way:
# daemon/ -> fs/, net/, proto/ -> daemon/core/.
CORE_SRCS   := $(wildcard daemon/core/*.c)
FS_SRCS     := $(wildcard fs/*.c)
NET_SRCS    := $(wildcard net/*.c)
DAEMON_SRCS := $(filter-out daemon/main.c,$(wildcard daemon/*.c))
LIB_SRCS    := $(CORE_SRCS) $(FS_SRCS) $(NET_SRCS) $(DAEMON_SRCS)

# protobuf-c code is generated at build time into $(BUILD)/proto, never committed: our
# containerd .proto files plus the well-known types they import.
PROTO_OURS  := $(shell find proto -name '*.proto')
PROTO_WKT   := google/protobuf/empty.proto google/protobuf/field_mask.proto google/protobuf/timestamp.proto
PROTO_GEN_C := $(PROTO_OURS:proto/%.proto=$(BUILD)/proto/%.pb-c.c) $(PROTO_WKT:%.proto=$(BUILD)/proto/%.pb-c.c)
PROTO_GEN_H := $(PROTO_GEN_C:.c=.h)
PROTO_OBJS  := $(PROTO_GEN_C:.c=.o)
LIB_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(PROTO_OBJS)

# Tools: each tools/NAME.c is one binary, $(BUILD)/tools/NAME.  The converter is a multi-file
# tool: tools/stargzify/main.c holds main(), the other files of tools/stargzify/ are its modules
# (libstargzify.a, also linked by toc-bench and by the unit tests of tests/unit/tools/).  Their
# objects go to $(BUILD)/tools-obj/ because $(BUILD)/tools/stargzify is the binary.
TOOL_SRCS   := $(wildcard tools/*.c)
TOOLS       := $(TOOL_SRCS:tools/%.c=$(BUILD)/tools/%) $(BUILD)/tools/stargzify
STARGZIFY_SRCS := $(filter-out tools/stargzify/main.c,$(wildcard tools/stargzify/*.c))
STARGZIFY_OBJS := $(STARGZIFY_SRCS:tools/%.c=$(BUILD)/tools-obj/%.o)

UNIT_SRCS   := $(wildcard tests/unit/*/test_*.c)
UNIT_BINS   := $(UNIT_SRCS:%.c=$(BUILD)/%)
TEST_HELPER_SRCS := $(wildcard tests/helpers/*.c)
TEST_HELPERS := $(TEST_HELPER_SRCS:tests/helpers/%.c=$(BUILD)/tests/helpers/%)

.PHONY: all deps run check check-asan-integration unit-bins fuzz-bins fuzz bench bench-quick clean install
all: $(BUILD)/stargzd $(TOOLS)

deps:
	@tools/install-deps.sh

$(BUILD)/proto/%.pb-c.c $(BUILD)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/proto
	protoc-c --c_out=$(BUILD)/proto -Iproto -I/usr/include $<

$(BUILD)/proto/google/%.pb-c.c $(BUILD)/proto/google/%.pb-c.h: /usr/include/google/%.proto
	@mkdir -p $(BUILD)/proto
	protoc-c --c_out=$(BUILD)/proto -I/usr/include $<

# Keep the generated sources (make would delete them as intermediate files).
.SECONDARY: $(PROTO_GEN_C) $(PROTO_GEN_H)

# Generated code: same flags, but its style is protoc-c's, not ours.
$(BUILD)/proto/%.pb-c.o: $(BUILD)/proto/%.pb-c.c $(PROTO_GEN_H)
	$(CC) $(CFLAGS) -Wno-missing-prototypes -Wno-shadow -c -o $@ $<

# Every object may include generated headers: generate them first.
$(BUILD)/%.o: %.c | $(PROTO_GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/libstargzd.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/stargzd: $(BUILD)/daemon/main.o $(BUILD)/libstargzd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tools/%: $(BUILD)/tools/%.o $(BUILD)/libstargzd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tools-obj/%.o: tools/%.c | $(PROTO_GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/libstargzify.a: $(STARGZIFY_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tools/stargzify: $(BUILD)/tools-obj/stargzify/main.o $(BUILD)/libstargzify.a $(BUILD)/libstargzd.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# toc-bench makes its layer with the converter's modules.
$(BUILD)/tools/toc-bench: $(BUILD)/tools/toc-bench.o $(BUILD)/libstargzify.a $(BUILD)/libstargzd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(BUILD)/libstargzd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The converter's modules are tested through libstargzify.a (tests/unit/tools/).
$(BUILD)/tests/unit/tools/%: $(BUILD)/tests/unit/tools/%.o $(BUILD)/libstargzify.a $(BUILD)/libstargzd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/helpers/%: $(BUILD)/tests/helpers/%.o $(BUILD)/libstargzd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit-bins: $(UNIT_BINS) $(TEST_HELPERS)

# Fuzz targets: tests/fuzz/NAME/fuzz.c defines LLVMFuzzerTestOneInput; tests/fuzz/NAME/corpus/
# holds the seeds.  `make fuzz` builds them with clang into build-fuzz/ and runs each for
# FUZZ_SECONDS; tests/fuzz/run.sh does the same inside `make check`.
FUZZ_SRCS   := $(wildcard tests/fuzz/*/fuzz.c)
FUZZ_BINS   := $(FUZZ_SRCS:tests/fuzz/%/fuzz.c=$(BUILD)/fuzz/%)
FUZZ_SECONDS ?= 20

$(BUILD)/fuzz/%: $(BUILD)/tests/fuzz/%/fuzz.o $(BUILD)/libstargzd.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

fuzz-bins: $(FUZZ_BINS)

# Replay drivers: tests/fuzz/replay.c (a main() that runs saved inputs through
# LLVMFuzzerTestOneInput) linked with each target, in the ordinary and the ASan+UBSan builds.
# tests/run.sh replays tests/fuzz/NAME/corpus/ and tests/fuzz/NAME/regressions/ with them.
REPLAY_BINS := $(FUZZ_SRCS:tests/fuzz/%/fuzz.c=$(BUILD)/fuzz-replay/%)
.SECONDARY: $(FUZZ_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/tests/fuzz/replay.o

$(BUILD)/fuzz-replay/%: $(BUILD)/tests/fuzz/%/fuzz.o $(BUILD)/tests/fuzz/replay.o $(BUILD)/libstargzd.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit-bins: $(REPLAY_BINS)

fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang FUZZ=1 fuzz-bins
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh

# The whole test suite: deps, the normal build, unit + integration tests, then the unit tests
# again under ASan+UBSan.  tests/run.sh prints one summary line "N passed, N failed".
check: deps
	$(MAKE) all unit-bins
	$(MAKE) BUILD=build-asan SANITIZE=1 unit-bins
	$(MAKE) BUILD=build-fuzz CC=clang FUZZ=1 fuzz-bins
	tests/run.sh

# Opt-in (about 6 minutes more than the integration tests): the integration tests against the
# daemon built with ASan+UBSan; every sanitizer report a daemon writes fails the run.
check-asan-integration: deps
	$(MAKE) all unit-bins
	$(MAKE) BUILD=build-asan SANITIZE=1 build-asan/stargzd
	tests/run.sh asan-integration

run: deps
	$(MAKE) all
	$(BUILD)/stargzd --foreground

# Benchmarks (tools/bench/README.md): never part of `make check`.  BENCH_QUICK=1 or
# `make bench-quick` for the few-minute run.
bench:
	tools/install-deps.sh --bench
	$(MAKE) all
	tools/bench/run.sh

bench-quick:
	$(MAKE) bench BENCH_QUICK=1

# The systemd unit (packaging/stargzd.service) with ExecStart pointing at the installed binary;
# /usr/local/lib/systemd/system is on systemd's unit path.
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system

install: all
	install -D -m 0755 $(BUILD)/stargzd $(DESTDIR)$(PREFIX)/bin/stargzd
	@mkdir -p $(DESTDIR)$(SYSTEMDUNITDIR)
	sed 's#@BINDIR@#$(PREFIX)/bin#' packaging/stargzd.service >$(DESTDIR)$(SYSTEMDUNITDIR)/stargzd.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/stargzd.service

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) -type f -name '*.d' 2>/dev/null)
