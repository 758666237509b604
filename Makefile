# SPDX-License-Identifier: GPL-2.0
#
# mdwrite out-of-tree build.
#
#   make                      build mdwrite.ko against KDIR
#   make KDIR=/path/to/kbuild build against your own CONFIG_RUST kernel
#   make demo                 the main job (see README.md)
#   make check                every test (see README.md)
#   make bench                the benchmark (see Documentation/benchmarks.md)
#   make fuzz DURATION=600    only the fuzzer in a debug VM (SEED=N optional;
#                             see Documentation/testing.rst)
#   make kcsan DURATION=300   the concurrency selftests and the fuzzer on the
#                             KCSAN kernel (scripts/run-kcsan.sh)
#   make deb                  the Debian packages mdwrite-dkms and mdwrite-tools
#                             (see Documentation/install.rst)
#
# KDIR defaults to the cached debug test kernel (scripts/build-kernel.sh
# builds it on first use). A kernel built with LLVM=1 or LLVM=-N needs the
# same LLVM= here; the cached kernels record theirs in mdwrite-build.env.

ifneq ($(filter-out demo check bench fuzz kcsan deb,$(or $(MAKECMDGOALS),all)),)
KDIR ?= $(shell $(CURDIR)/scripts/build-kernel.sh debug)
-include $(KDIR)/mdwrite-build.env
endif
RUSTC ?= /usr/bin/rustc

kmake = $(MAKE) -C $(KDIR) M=$(CURDIR) RUSTC=$(RUSTC) $(if $(LLVM),LLVM=$(LLVM))

all:
	$(kmake) modules

clean:
	$(kmake) clean

demo:
	scripts/run-demo.sh

check:
	scripts/run-tests.sh

bench:
	scripts/bench.sh

DURATION ?= 600
SEED ?= 1
fuzz:
	MDW_FUZZ_DURATION=$(DURATION) MDW_FUZZ_SEED=$(SEED) scripts/vm-test.sh --kernel debug --only '^fuzz$$'

kcsan:
	scripts/run-kcsan.sh $(DURATION)

deb:
	scripts/build-deb.sh

.PHONY: all clean demo check bench fuzz kcsan deb
