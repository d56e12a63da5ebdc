# SecureNN reference implementation -- POSIX make, no autodetection.
#
#   make          build ./securenn (the program) and ./test (the test runner)
#   make test     build and run the test suite; last line "N passed, M failed"
#   make check    the test suite rebuilt with -Werror and ASan + UBSan (in a
#                 directory under /tmp, leaving ./securenn and ./test), then run
#   make valgrind the quick test subset under valgrind (memcheck)
#   make demo     train network A securely on the official MNIST, three parties
#                 (PORT=P: on ports P, P+1, P+2)
#   make bench    time, bytes and rounds per protocol and network vs [SNN]
#   make check-globals   fail if any object holds mutable global state
#   make check-layers    fail if net.c calls into the files above it, or securenn.c
#                        into nn.c or mnist.c
#   make check-hooks     fail if the program's sources, preprocessed as ./securenn
#                        is built, name a test hook (test_flags, SNN_TEST_*)
#   make mnist    unpack data/*.gz (the official MNIST and network C's model
#                 trained securely) and check data/CKSUMS; test, check,
#                 valgrind and demo do this first
#   make fuzz     libFuzzer on the IDX reader, the model and checkpoint readers
#                 and the frame parser, FUZZ_SECONDS each (clang; binaries and corpora in
#                 FUZZ_DIR, outside the tree)
#   make check-32 the library compiled as for a 32-bit size_t (needs -m32)

.POSIX:
.PHONY: check-hooks check-layers all test check sanitized asan ubsan valgrind check-globals demo bench clean mnist fuzz check-32

CC      = cc
CFLAGS  = -std=c99 -pedantic -Wall -Wextra -Wshadow -Wconversion -Wstrict-prototypes \
          -Wmissing-prototypes -Wvla -Wcast-qual -Wpointer-arith -Wformat=2 -O2 -g
LDLIBS  = -lm
SAN     = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LIB     = securenn.c net.c nn.c mnist.c
HDR     = securenn.h
TESTARGS =

all: securenn test-runner

securenn: $(LIB) $(HDR)
	$(CC) $(CFLAGS) -DSNN_PROGRAM -o securenn $(LIB) $(LDLIBS)

# The runner is the file ./test; "test" itself is the phony target that runs it.
# Only the runner is built with -DSNN_TEST_HOOKS, the switches that weaken a
# protocol (securenn.h, SNN_TEST_ON); ./securenn has none of them.
test-runner: $(LIB) test.c $(HDR)
	$(CC) $(CFLAGS) -DSNN_TEST_HOOKS -o test $(LIB) test.c $(LDLIBS)
	@touch test-runner

test: securenn test-runner mnist
	./test $(TESTARGS)

# The sanitizer builds go to a directory of their own outside the tree
# (with links to the sources, data/ and the docs, which the tests read), so
# that ./securenn and ./test stay as they were.
SANDIR = /tmp/securenn-check.$$$$
sanitized:
	@d=$(SANDIR); rm -rf $$d; mkdir $$d || exit 1; \
	for f in $(LIB) $(HDR) test.c Makefile README.md SPEC.md LICENSE data .ci; do \
	    ln -s "`pwd`/$$f" "$$d/$$f" || exit 1; done; \
	echo "building the sanitized ./securenn and ./test in $$d"; \
	$(CC) $(CFLAGS) $(SANFLAGS) -DSNN_PROGRAM -o $$d/securenn $(LIB) $(LDLIBS) \
	&& $(CC) $(CFLAGS) $(SANFLAGS) -DSNN_TEST_HOOKS -o $$d/test $(LIB) test.c $(LDLIBS) \
	&& (cd $$d && ./test $(TESTARGS)); rc=$$?; rm -rf $$d; exit $$rc

check: mnist
	$(MAKE) SANFLAGS='-Werror $(SAN)' TESTARGS='--quick $(TESTARGS)' sanitized

asan: mnist
	$(MAKE) SANFLAGS='-fsanitize=address -fno-omit-frame-pointer' sanitized

ubsan: mnist
	$(MAKE) SANFLAGS='-fsanitize=undefined -fno-sanitize-recover=all' sanitized

valgrind: securenn test-runner mnist
	valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	    ./test --quick $(TESTARGS)

# The layers: the transport (net.c) calls nothing in the protocols, layers
# or program, the protocols (securenn.c) nothing in the layers or the
# program, and the IDX reader (mnist.c) nothing of the others (nm -P:
# portable output, name first).
check-layers:
	$(CC) $(CFLAGS) -DSNN_PROGRAM -c $(LIB)
	@fail=0; \
	for pair in "net.o:securenn.o nn.o mnist.o" "securenn.o:nn.o mnist.o" "mnist.o:net.o securenn.o nn.o"; do \
	    low=$${pair%%:*}; high=$${pair#*:}; \
	    for s in `nm -P -u $$low | awk '{print $$1}'`; do \
	        for o in $$high; do \
	            if nm -P -g $$o | awk '$$2 != "U" {print $$1}' | grep -qx "$$s"; then \
	                echo "$${low%.o}.c calls $$s of $${o%.o}.c"; fail=1; \
	            fi; \
	        done; \
	    done; \
	done; \
	rm -f securenn.o net.o nn.o mnist.o; \
	if [ $$fail != 0 ]; then exit 1; fi; \
	echo "check-layers: net.c below securenn.c below nn.c; mnist.c below nn.c"

# The test hooks (securenn.h, SNN_TEST_ON) weaken protocols: they exist in
# the test runner's build alone.  The program's sources, preprocessed as
# ./securenn is built, must not name the flags or any hook (an #ifdef
# SNN_TEST_HOOKS left out shows here, or fails to compile).
check-hooks:
	@src=`$(CC) -E -DSNN_PROGRAM $(LIB)` || exit 1; \
	out=`echo "$$src" | grep -a -n 'test_flags\|SNN_TEST_' || true`; \
	if [ -n "$$out" ]; then echo "test hooks in the program's build:"; echo "$$out" | head -20; exit 1; fi; \
	echo "check-hooks: no test hook in ./securenn"

# The program part of nn.c is compiled too (-DSNN_PROGRAM): no mutable
# globals anywhere in ./securenn.
check-globals:
	$(CC) $(CFLAGS) -DSNN_PROGRAM -c $(LIB)
	@out=`nm securenn.o net.o nn.o mnist.o | awk '$$2 ~ /^[BbDdCc]$$/'`; \
	rm -f securenn.o net.o nn.o mnist.o; \
	if [ -n "$$out" ]; then echo "mutable globals:"; echo "$$out"; exit 1; fi; \
	echo "check-globals: no mutable global state"

# Fuzzing: test.c built with -DSNN_FUZZ=1 (IDX reader), 2 (model reader) or
# 3 (frame parser) is a libFuzzer harness.  Each runs FUZZ_SECONDS; a crash
# leaves its input in FUZZ_DIR and fails the target.
FUZZ_CC      = clang
FUZZ_SECONDS = 60
FUZZ_DIR     = /tmp/securenn-fuzz
FUZZ_FLAGS   = -std=c99 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

fuzz: $(LIB) test.c $(HDR)
	mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_FLAGS) -DSNN_TEST_HOOKS -DSNN_FUZZ=1 -o $(FUZZ_DIR)/fuzz-idx $(LIB) test.c $(LDLIBS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -DSNN_TEST_HOOKS -DSNN_FUZZ=2 -o $(FUZZ_DIR)/fuzz-model $(LIB) test.c $(LDLIBS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -DSNN_TEST_HOOKS -DSNN_FUZZ=3 -o $(FUZZ_DIR)/fuzz-frame $(LIB) test.c $(LDLIBS)
	for t in idx:8192 model:1048576 frame:65536; do \
	    n=$${t%%:*}; mkdir -p $(FUZZ_DIR)/corpus-$$n; \
	    $(FUZZ_DIR)/fuzz-$$n -max_total_time=$(FUZZ_SECONDS) -max_len=$${t#*:} -print_final_stats=1 \
	        -artifact_prefix=$(FUZZ_DIR)/crash-$$n- $(FUZZ_DIR)/corpus-$$n 2>$(FUZZ_DIR)/fuzz-$$n.log; \
	    rc=$$?; grep -E '^stat::number_of_executed_units|^Done|ERROR' $(FUZZ_DIR)/fuzz-$$n.log | sed "s/^/fuzz-$$n: /"; \
	    if [ $$rc -ne 0 ]; then tail -40 $(FUZZ_DIR)/fuzz-$$n.log; exit 1; fi; \
	done

check-32:
	$(CC) -m32 -fsyntax-only $(CFLAGS) -Werror $(LIB)

# make demo PORT=7300: the parties listen on 7300-7302 (default 7000-7002)
demo: securenn mnist
	@p='$(PORT)'; echo "./securenn demo$${p:+ --port $$p}"; ./securenn demo $${p:+--port "$$p"}

bench: securenn
	./securenn bench

# The official MNIST and the model of network C trained securely are
# committed gzipped (data/README.md); the unpacked files are ignored by git.
# Each is unpacked once, and must match its size and POSIX cksum CRC in
# data/CKSUMS.
MNIST = data/train-images-idx3-ubyte data/train-labels-idx1-ubyte \
        data/t10k-images-idx3-ubyte data/t10k-labels-idx1-ubyte
MODEL = data/C-secure.snnm

mnist: $(MNIST) $(MODEL)

data/train-images-idx3-ubyte: data/train-images-idx3-ubyte.gz
data/train-labels-idx1-ubyte: data/train-labels-idx1-ubyte.gz
data/t10k-images-idx3-ubyte: data/t10k-images-idx3-ubyte.gz
data/t10k-labels-idx1-ubyte: data/t10k-labels-idx1-ubyte.gz
data/C-secure.snnm: data/C-secure.snnm.gz
$(MNIST) $(MODEL): data/CKSUMS
	@b=`basename $@`; gzip -dc $@.gz > $@.tmp || { rm -f $@.tmp; exit 1; }; \
	want=`awk -v n="$$b" '$$3 == n { print $$1, $$2 }' data/CKSUMS`; \
	got=`cksum < $@.tmp | awk '{ print $$1, $$2 }'`; \
	if [ -z "$$want" ] || [ "$$got" != "$$want" ]; then \
	    echo "$@: cksum and size '$$got', data/CKSUMS says '$$want'"; rm -f $@.tmp; exit 1; fi; \
	mv $@.tmp $@; echo "unpacked $@ (cksum and size $$got, as data/CKSUMS)"

clean:
	rm -f securenn test test-runner *.o
