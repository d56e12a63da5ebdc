# SecureNN reference implementation -- POSIX make, no autodetection.
#
#   make          build ./securenn (the program) and ./test (the test runner)
#   make test     build and run the test suite; last line "N passed, M failed"
#   make check    the test suite rebuilt with -Werror and ASan + UBSan, then run
#   make valgrind the quick test subset under valgrind (memcheck)
#   make demo     train network A on the bundled MNIST digits, three parties
#   make bench    time, bytes and rounds per protocol and network vs [SNN]
#   make check-globals   fail if any object holds mutable global state

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

test: securenn test-runner
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

valgrind: securenn test-runner
	valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	    ./test --quick $(TESTARGS)

check-globals:
	$(CC) $(CFLAGS) -c $(LIB)
	@out=`nm securenn.o net.o nn.o mnist.o | awk '$$2 ~ /^[BbDdCc]$$/'`; \
	rm -f securenn.o net.o nn.o mnist.o; \
	if [ -n "$$out" ]; then echo "mutable globals:"; echo "$$out"; exit 1; fi; \
	echo "check-globals: no mutable global state"

demo: securenn
	./securenn demo

bench: securenn
	./securenn bench

# Downloads the full official MNIST (60,000/10,000) into data/full when a
# network is present; nothing else depends on it.  Use: --data data/full
mnist:
	mkdir -p data/full
	for f in train-images-idx3-ubyte train-labels-idx1-ubyte \
	         t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do \
	    curl -fsSL -o data/full/$$f.gz https://storage.googleapis.com/cvdf-datasets/mnist/$$f.gz \
	    && gunzip -f data/full/$$f.gz || exit 1; \
	done

clean:
	rm -f securenn test test-runner *.o
