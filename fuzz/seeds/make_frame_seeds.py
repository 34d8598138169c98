#!/usr/bin/env python3
"""Writes the frame target's seeds into seeds/frame/: [config, seed_lo, seed_hi, stream...]."""
import os
import struct
def varint(n):
    out=b''
    while True:
        b=n&0x7f; n>>=7
        if n: out+=bytes([b|0x80])
        else: return out+bytes([b])
def s(x): x=x.encode(); return varint(len(x))+x
def frame(p): return struct.pack('<I',len(p))+p
# One item of a Run or Done body: a head byte (status in bits 0-2, the
# value's length in bits 3-7 when under 31; 31: a u32 length follows), then the value.
def item(status,value):
    if len(value)<31: return bytes([status|len(value)<<3])+value
    return bytes([status|31<<3])+struct.pack('<I',len(value))+value
def items(values,status=0): return b''.join(item(status,v) for v in values)
# A dense run: head byte 7, the width, a u32 count, then the values back to
# back, all of status Ok (fixed-width types: a u64 is 8 bytes little-endian).
def dense(width,values): return bytes([7,width])+struct.pack('<I',len(values))+b''.join(values)
def u64le(x): return struct.pack('<Q',x)
def done(tag,first,count,nanos,body,codec=0,io=0): return frame(bytes([12])+struct.pack('<QIIQQQI',tag,first,count,nanos,codec,io,0)+body)
def run(tag,task,count,body): return frame(bytes([1])+struct.pack('<QII',tag,task,count)+body)
ready=frame(bytes([10])); exit_=frame(bytes([2])+struct.pack('<I',0xffffffff)); exit3=frame(bytes([2])+struct.pack('<I',3))
initf=frame(bytes([11])+b'database went away')
exited=frame(bytes([13])+item(0,varint(42)))
u64s=items([varint(x) for x in [0,1,300,2**63]])
outs=item(0,varint(25))+item(1,s('task panicked at src/x.rs:1:1'))+item(2,s('could not decode the input'))+item(0,varint(7))
seeds={
 'ready': (0x00, ready),
 'done_u64': (0x00, done(7,0,4,1234,outs)),
 'done_short': (0x01, done(7,0,9,1,outs[:5])),
 'run_u64': (0x02, run(9,0,4,u64s)),
 'run_string': (0x04|0x02, run(9,1,2,items([s('hello'),s('world')]))),
 'run_pair': (0x0c, run(9,1,2,items([varint(5)+s('five'),varint(6)+s('six')]))),
 'done_result': (0x14, done(1,0,2,0,item(0,bytes([0])+varint(3)+b'abc')+item(0,bytes([1])+s('err')))),
 'exit_exited': (0x03, exit_+exit3+exited),
 'init_failed': (0x00, ready+initf),
 'oversized': (0x00, ready+b'\xff\xff\xff\xff'+b'x'*16),
 'just_over_limit': (0x00, struct.pack('<I',(1<<20)+1)+b'\x0c'),
 'at_limit_claim': (0x03, struct.pack('<I',1<<20)+b'\x0c'+b'\x00'*64),
 'truncated': (0x01, ready+frame(b'\x0c'+b'\x00'*20)[:-3]),
 'truncated_prefix': (0x00, ready+b'\x05\x00'),
 'small_limit_edge': (0x20, bytes([5,0,0,0])+bytes([10,0,0,0,0])+bytes([6,0,0,0])+b'\x0a'*6),
 # Regression: a Done whose one outcome is a tree nested 5,000 levels deep
 # (config type 7 = Tree) overflowed the driver's stack; now a malformed outcome.
 'regress-deep-tree': (0x1c, done(3,0,1,0,item(0,b'\x01\x01'*5000+b'\x00\x00'))),
 'many': (0x1b, b''.join([ready,done(1,0,1,5,item(0,varint(1))),run(2,0,1,item(0,varint(2))),exited,exit_])),
 # Dense runs of u64 with an exception between them, both ways; and a
 # run whose width is not the type's (each of its items fails alone).
 'run_dense_u64': (0x02, run(9,0,6,dense(8,[u64le(x) for x in [0,1,2**63]])+item(2,s('could not encode the input'))+dense(8,[u64le(5),u64le(6)]))),
 'done_dense_u64': (0x00, done(7,0,5,10,dense(8,[u64le(25),u64le(36)])+item(1,s('task panicked'))+dense(8,[u64le(7),u64le(8)]))),
 'run_dense_narrow': (0x00, run(9,0,3,dense(4,[b'\x01\x00\x00\x00']*3))),
 # A Run whose second item does not decode as the type: it fails alone.
 'run_undecodable': (0x00, run(4,0,3,items([varint(1),b'\xff\xff',varint(3)]))),
}
here=os.path.join(os.path.dirname(os.path.abspath(__file__)),'frame')
os.makedirs(here,exist_ok=True)
for name,(cfg,stream) in seeds.items():
    open(os.path.join(here,name),'wb').write(bytes([cfg,0x5a,0xa5])+stream)
