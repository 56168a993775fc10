//! The swap area on the kernel's RAM device: a commit reads back.

use std::vec;

use super::*;
use crate::flash::testing::RamFlash;

fn ram() -> RamFlash {
    let geo = Geometry {
        block_size: 512,
        capacity: 64 * 512,
        max_transfer: 2048,
        queue_depth: 4,
    };
    RamFlash::new(vec![0; 64 * 512], geo)
}

#[test]
fn a_commit_reads_back() {
    let mut dev = ram();
    let mut mem = vec![0u8; memory_bytes(64 * 512, 512)];
    let mut area = SwapArea::format(&mut dev, &[1; 32], &mut mem).unwrap();
    let tokens: vec::Vec<u32> = (0..40).collect();
    let p = [9u8; 700];
    let w = [ChunkWrite {
        index: 0,
        level: 1,
        valid_tokens: 16,
        payload: &p,
    }];
    let c = Commit {
        context: 5,
        tokens: &tokens,
        keep: &[],
        write: &w,
    };
    area.commit(&c).unwrap();
    let mut t = [0u32; 64];
    let mut ch = [ChunkInfo::default(); 4];
    let view = area.read_context(5, &mut t, &mut ch).unwrap();
    assert_eq!((view.tokens, view.chunks, view.generation), (40, 1, 1));
    assert_eq!(&t[..40], &tokens[..]);
    assert_eq!(ch[0].len, 700);
}
