use super::*;

#[test]
fn structures_have_the_headers_layout() {
    // The sizes the header's users assert (capi/examples).
    assert_eq!(size_of::<LodeRtOptions>(), 48);
    assert_eq!(size_of::<LodeRtGenerate>(), 32);
    assert_eq!(size_of::<LodeRtStats>(), 72);
}

fn last_error() -> String {
    let mut buf = [0 as c_char; 256];
    // SAFETY: 256 writable bytes.
    let n = unsafe { lode_rt_last_error(buf.as_mut_ptr(), buf.len()) };
    // SAFETY: lode_rt_last_error NUL-terminated it.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    assert_eq!(n, s.len(), "messages here are shorter than the buffer");
    s
}

#[test]
fn mistakes_are_codes_with_messages() {
    let mut h = 0u64;
    // SAFETY (every call below): valid or deliberately NULL pointers.
    unsafe {
        assert_eq!(
            lode_rt_session_open(std::ptr::null(), std::ptr::null(), &mut h),
            LODE_RT_ERR_NULL
        );
        assert!(last_error().contains("required"));
        assert_eq!(
            lode_rt_session_open(c"/nonexistent.gguf".as_ptr(), std::ptr::null(), &mut h),
            LODE_RT_ERR_IO
        );
        assert!(last_error().contains("/nonexistent.gguf"));
        let wrong = LodeRtOptions {
            size: 4,
            ..LodeRtOptions::DEFAULT
        };
        assert_eq!(
            lode_rt_session_open(c"/nonexistent.gguf".as_ptr(), &wrong, &mut h),
            LODE_RT_ERR_INVALID
        );
        assert_eq!(lode_rt_context_new(12345, &mut h), LODE_RT_ERR_BAD_HANDLE);
        assert_eq!(
            lode_rt_generate(
                1,
                2,
                c"x".as_ptr(),
                std::ptr::null(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut()
            ),
            LODE_RT_ERR_BAD_HANDLE
        );
        let bad_utf8 = [0xffu8 as c_char, 0];
        assert_eq!(
            lode_rt_generate(
                1,
                2,
                bad_utf8.as_ptr(),
                std::ptr::null(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut()
            ),
            LODE_RT_ERR_INVALID
        );
    }
    assert_eq!(lode_rt_session_close(0), LODE_RT_ERR_BAD_HANDLE);
    assert_eq!(lode_rt_context_free(0, 0), LODE_RT_ERR_BAD_HANDLE);
    for code in 0..=12 {
        // SAFETY: a static NUL-terminated string.
        let s = unsafe { CStr::from_ptr(lode_rt_strerror(-code)) };
        assert!(!s.to_bytes().is_empty());
    }
}
