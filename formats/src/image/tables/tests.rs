//! Decoding the image's tables: records, names, shapes and codes.

use super::*;

fn u32s<const N: usize>(v: [u32; N]) -> [U32; N] {
    v.map(U32::new)
}

#[test]
fn permutations() {
    let at = Location::Layer(0);
    let ok = |p: &[U32], i: &[U32]| check_permutation(p, i, at).map_err(|e| e.kind());
    assert_eq!(ok(&u32s([1, 2, 0]), &u32s([2, 0, 1])), Ok(()));
    assert_eq!(ok(&[], &[]), Ok(()));
    // Duplicate neuron: perm is not injective.
    assert_eq!(
        ok(&u32s([0, 0, 1]), &u32s([0, 2, 1])),
        Err(ErrorKind::Malformed)
    );
    // Right permutation, wrong inverse.
    assert_eq!(
        ok(&u32s([1, 2, 0]), &u32s([1, 2, 0])),
        Err(ErrorKind::Malformed)
    );
    assert_eq!(ok(&u32s([0, 3]), &u32s([0, 1])), Err(ErrorKind::Malformed));
    assert_eq!(ok(&u32s([0]), &u32s([0, 1])), Err(ErrorKind::Malformed));
}

proptest::proptest! {
    #[test]
    fn real_permutations_pass_and_any_change_fails(
        keys in proptest::collection::vec(proptest::num::u32::ANY, 1..64),
        which in proptest::num::usize::ANY,
        delta in 1u32..100,
    ) {
        // A permutation: positions sorted by random keys.
        let mut perm: std::vec::Vec<u32> = (0..keys.len() as u32).collect();
        perm.sort_by_key(|&i| (keys[i as usize], i));
        let mut inverse = std::vec![0u32; perm.len()];
        for (p, &n) in perm.iter().enumerate() {
            inverse[n as usize] = p as u32;
        }
        let p: std::vec::Vec<U32> = perm.iter().copied().map(U32::new).collect();
        let mut i: std::vec::Vec<U32> = inverse.iter().copied().map(U32::new).collect();
        proptest::prop_assert!(check_permutation(&p, &i, Location::Layer(0)).is_ok());
        let k = which % i.len();
        i[k] = U32::new(i[k].get().wrapping_add(delta));
        proptest::prop_assert!(check_permutation(&p, &i, Location::Layer(0)).is_err());
    }
}

#[test]
fn only_raw_bundles_pass() {
    assert_eq!(check_codecs(&[], 0), Ok(()));
    assert_eq!(check_codecs(&[0, 0, 0], 3), Ok(()));
    let e = check_codecs(&[0, 0, 7, 1], 3).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnsupportedCodec);
    assert_eq!(e.location(), Location::Bundle { layer: 3, pos: 2 });
}

#[test]
fn cursor_kinds() {
    let mut c = DataCursor::new(4096, 4 * 4096, 4096);
    let at = Location::Tensor(0);
    assert_eq!(
        c.place(4097, 1, at).map_err(|e| e.kind()),
        Err(ErrorKind::Misaligned)
    );
    assert_eq!(
        c.place(4 * 4096, 1, at).map_err(|e| e.kind()),
        Err(ErrorKind::OutOfRange)
    );
    assert_eq!(
        c.place(u64::MAX - 4095, 8192, at).map_err(|e| e.kind()),
        Err(ErrorKind::OutOfRange)
    );
    assert_eq!(
        c.place(8192, 1, at).map_err(|e| e.kind()),
        Err(ErrorKind::Malformed)
    );
    assert_eq!(c.place(4096, 5000, at), Ok(()));
    assert_eq!(c.finish().map_err(|e| e.kind()), Err(ErrorKind::Malformed));
    // An empty extent sits at the boundary and moves nothing.
    assert_eq!(c.place(3 * 4096, 0, at), Ok(()));
    assert_eq!(c.place(3 * 4096, 4096, at), Ok(()));
    assert_eq!(c.finish(), Ok(()));
}
