//! Signatures are checked before anything compiles; compiled code is cached across processes.

use vauban_core::outcome::CodeSource;
use vauban_host::{LoadError, Runtime, RuntimeConfig};
use vauban_tests::{Publisher, Target, caps, run, runtime, sample_bytes, stdout};

#[test]
fn unsigned_tampered_and_untrusted_modules_are_refused_before_compiling() {
    let publisher = Publisher::new();
    let stranger = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    for target in Target::BOTH {
        let signed = publisher.signed("hello", target);
        let mut tampered = signed.clone();
        // Flip one byte near the end of the code: still parseable, no longer what was signed.
        let at = tampered.len() - 10;
        tampered[at] ^= 0x01;

        let cases = [
            (sample_bytes("hello", target), "module is not signed"),
            (tampered, "module was modified after signing"),
            (
                stranger.signed("hello", target),
                "not signed by a trusted key",
            ),
        ];
        let mut messages = Vec::new();
        for (bytes, expected) in cases {
            let Err(error) = runtime.load(&bytes) else {
                panic!("{target:?}: module expected to be refused ({expected}) was loaded");
            };
            assert!(matches!(error, LoadError::Signature(_)), "{error}");
            let message = error.to_string();
            assert!(message.contains(expected), "{target:?}: {message}");
            messages.push(message);
        }
        messages.dedup();
        assert_eq!(messages.len(), 3, "each refusal has its own message");
    }
    assert_eq!(runtime.stats().compiled, 0, "nothing was compiled");
    assert_eq!(runtime.stats().disk_cache_hits, 0, "nothing was loaded");
}

#[test]
fn untrusted_signer_is_named() {
    let publisher = Publisher::new();
    let stranger = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    let error = runtime
        .load(&stranger.signed("hello", Target::P1))
        .err()
        .expect("refused");
    let stranger_id = stranger.key().public_key().id().to_string();
    assert!(error.to_string().contains(&stranger_id), "{error}");
}

#[tokio::test]
async fn a_fresh_runtime_loads_compiled_code_from_the_disk_cache() {
    let publisher = Publisher::new();
    let cache = tempfile::tempdir().expect("tempdir");
    let start = || {
        let mut config = RuntimeConfig::new(cache.path());
        config.trust = publisher.trust();
        Runtime::new(config).expect("runtime")
    };
    for target in Target::BOTH {
        let module = publisher.signed("hello", target);

        let first = start();
        let report = run(&first, &module, caps(), b"").await;
        assert_eq!(report.code_source, CodeSource::Compiled);
        let again = run(&first, &module, caps(), b"").await;
        assert_eq!(again.code_source, CodeSource::Memory);
        assert_eq!(first.stats().compiled, 1);
        drop(first);

        let second = start();
        let report = run(&second, &module, caps(), b"").await;
        assert_eq!(report.code_source, CodeSource::DiskCache, "{target:?}");
        assert_eq!(stdout(&report), "hello, world!\n");
        assert_eq!(second.stats().compiled, 0);
        assert_eq!(second.stats().disk_cache_hits, 1);
    }
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_replaced_not_trusted() {
    let publisher = Publisher::new();
    let cache = tempfile::tempdir().expect("tempdir");
    let module = publisher.signed("hello", Target::P1);
    let start = || {
        let mut config = RuntimeConfig::new(cache.path());
        config.trust = publisher.trust();
        Runtime::new(config).expect("runtime")
    };
    run(&start(), &module, caps(), b"").await;
    // Overwrite every artifact with garbage.
    for engine_dir in std::fs::read_dir(cache.path()).expect("read cache") {
        for artifact in std::fs::read_dir(engine_dir.expect("entry").path()).expect("read") {
            std::fs::write(artifact.expect("entry").path(), b"not an artifact").expect("write");
        }
    }
    let runtime = start();
    let report = run(&runtime, &module, caps(), b"").await;
    assert_eq!(report.code_source, CodeSource::Compiled);
    assert!(report.outcome.is_success(), "{}", report.outcome);
}

#[test]
fn a_module_that_is_not_a_command_is_refused() {
    let publisher = Publisher::new();
    let runtime = runtime(publisher.trust(), &[]);
    // A valid core module with no `_start`: (module (func (export "f")))
    let reactor: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
        0x03, 0x02, 0x01, 0x00, // func 0: type 0
        0x07, 0x05, 0x01, 0x01, b'f', 0x00, 0x00, // export "f" func 0
        0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code
    ];
    let signed = publisher.key().sign_module(reactor).expect("sign");
    let error = runtime.load(&signed).err().expect("refused");
    assert!(error.to_string().contains("no `_start`"), "{error}");
}
