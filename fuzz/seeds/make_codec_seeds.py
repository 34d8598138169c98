#!/usr/bin/env python3
"""Writes the codec target's seeds (postcard encodings of the fuzzed types) into seeds/codec/."""
import os
here = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'codec')
os.makedirs(here, exist_ok=True)

def varint(n):
    out = b''
    while True:
        b = n & 0x7f; n >>= 7
        if n: out += bytes([b | 0x80])
        else: return out + bytes([b])
def zigzag(n, bits): return (n << 1) ^ (n >> (bits - 1))
def s(x): x = x.encode(); return varint(len(x)) + x

kind_named = varint(4) + b'\x01' + varint(zigzag(-123456789, 128)) + b'\xfe'
kind_text = varint(2) + s('text')
record = (varint(7) + s('name') + varint(2) + s('a') + s('b') + varint(3) + b'xyz'
          + kind_named + b'\x01' + varint(zigzag(-5, 32)) + varint(1) + varint(300) + kind_text)
seeds = {
    'u64': varint(2**64 - 1),
    'string': s('hello, world'),
    'pair': varint(42) + s('forty-two'),
    'record': record,
    'result_ok': varint(0) + varint(3) + b'abc',
    'result_err': varint(1) + s('no'),
    # A tree 100 levels deep: Node (variant 1) with one child, 100 times, then Leaf(0).
    'tree_100': b'\x01\x01' * 100 + b'\x00\x00',
    'back_to_back': varint(1) + varint(2) + varint(3),
    # Regression: 5,000 levels of nesting (10 KB) overflowed the stack (the
    # codec had no depth limit); now an error.
    'regress-deep-tree': b'\x01\x01' * 5000 + b'\x00\x00',
}
for name, data in seeds.items():
    with open(os.path.join(here, name), 'wb') as f:
        f.write(data)
