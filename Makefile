# SecureNN reference implementation -- POSIX make, no autodetection.
#
#   make          build ./securenn (the program) and ./test (the test runner)
#   make test     build and run the test suite; last line "N passed, M failed"
#   make check    the test suite rebuilt with -Werror and ASan + UBSan, then run
#   make valgrind the quick test subset under valgrind (memcheck)
#   make demo     train network A securely on the official MNIST, three parties
#   make bench    time, bytes and rounds per protocol and network vs [SNN]
#   make check-globals   fail if any object holds mutable global state
#   make mnist    unpack data/*.gz (the official MNIST) and check data/CKSUMS;
#                 test, check, valgrind and demo do this first

.POSIX:
.PHONY: all test check asan ubsan valgrind check-globals demo bench clean mnist

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
test-runner: $(LIB) test.c $(HDR)
	$(CC) $(CFLAGS) -o test $(LIB) test.c $(LDLIBS)
	@touch test-runner

test: securenn test-runner mnist
	./test $(TESTARGS)

check:
	$(MAKE) clean
	$(MAKE) CFLAGS='$(CFLAGS) -Werror $(SAN)' TESTARGS='--quick $(TESTARGS)' test
	$(MAKE) clean

asan:
	$(MAKE) clean
	$(MAKE) CFLAGS='$(CFLAGS) -fsanitize=address -fno-omit-frame-pointer' test
	$(MAKE) clean

ubsan:
	$(MAKE) clean
	$(MAKE) CFLAGS='$(CFLAGS) -fsanitize=undefined -fno-sanitize-recover=all' test
	$(MAKE) clean

valgrind: securenn test-runner mnist
	valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	    ./test --quick $(TESTARGS)

check-globals:
	$(CC) $(CFLAGS) -c $(LIB)
	@out=`nm securenn.o net.o nn.o mnist.o | awk '$$2 ~ /^[BbDdCc]$$/'`; \
	rm -f securenn.o net.o nn.o mnist.o; \
	if [ -n "$$out" ]; then echo "mutable globals:"; echo "$$out"; exit 1; fi; \
	echo "check-globals: no mutable global state"

demo: securenn mnist
	./securenn demo

bench: securenn
	./securenn bench

# The official MNIST is committed gzipped (data/README.md); the unpacked
# files are ignored by git.  Each is unpacked once, and must match its size
# and POSIX cksum CRC in data/CKSUMS.
MNIST = data/train-images-idx3-ubyte data/train-labels-idx1-ubyte \
        data/t10k-images-idx3-ubyte data/t10k-labels-idx1-ubyte

mnist: $(MNIST)

data/train-images-idx3-ubyte: data/train-images-idx3-ubyte.gz
data/train-labels-idx1-ubyte: data/train-labels-idx1-ubyte.gz
data/t10k-images-idx3-ubyte: data/t10k-images-idx3-ubyte.gz
data/t10k-labels-idx1-ubyte: data/t10k-labels-idx1-ubyte.gz
$(MNIST): data/CKSUMS
	@b=`basename $@`; gzip -dc $@.gz > $@.tmp || { rm -f $@.tmp; exit 1; }; \
	want=`awk -v n="$$b" '$$3 == n { print $$1, $$2 }' data/CKSUMS`; \
	got=`cksum < $@.tmp | awk '{ print $$1, $$2 }'`; \
	if [ -z "$$want" ] || [ "$$got" != "$$want" ]; then \
	    echo "$@: cksum and size '$$got', data/CKSUMS says '$$want'"; rm -f $@.tmp; exit 1; fi; \
	mv $@.tmp $@; echo "unpacked $@ (cksum and size $$got, as data/CKSUMS)"

clean:
	rm -f securenn test test-runner *.o
