//! The host runtime in policy mode, on real signed samples: modules need the policy's publisher
//! signatures, a revoked digest is refused before anything compiles, and a module loaded under
//! one policy version is verified again once a newer version replaces it.

use vauban_core::envelope::Envelope;
use vauban_core::policy::POLICY_PAYLOAD_TYPE;
use vauban_core::{ModuleDigest, SecretKey, TrustPolicy, TrustStore};
use vauban_host::{LoadError, PolicyHolder, Runtime, RuntimeConfig};
use vauban_tests::{Target, caps, run, sample_bytes, shared_cache_dir, stdout};

/// A policy of `version` whose one root is `root` (which signs it) and whose one publisher (and
/// authorizer) is `publisher`, with `extra` at top level.
fn policy(version: u64, root: &SecretKey, publisher: &SecretKey, extra: &str) -> TrustPolicy {
    let entry = |k: &SecretKey, roles: &str| {
        format!(
            "[[keys]]\nid = \"{}\"\nalg = \"ed25519\"\npublic_key = \"\"\"\n{}\"\"\"\nroles = [{roles}]\n",
            k.public_key().id(),
            k.public_key().to_pem()
        )
    };
    let toml = format!(
        "version = {version}\n{extra}\n{}{}[thresholds]\nroot = 1\npublisher = 1\nauthorizer = 1\n",
        entry(root, "\"root\""),
        entry(publisher, "\"publisher\", \"authorizer\""),
    );
    let mut signatures = Envelope::new(POLICY_PAYLOAD_TYPE, toml.as_bytes());
    signatures.sign(root).expect("sign");
    let roots = TrustStore::new([root.public_key().clone()]);
    TrustPolicy::load_verified(toml.as_bytes(), &signatures, &roots).expect("policy")
}

fn runtime(holder: &PolicyHolder) -> Runtime {
    let mut config = RuntimeConfig::new(shared_cache_dir());
    config.policy = Some(holder.clone());
    config.max_instances = 2;
    Runtime::new(config).expect("start runtime")
}

#[tokio::test]
async fn a_policy_host_runs_what_its_publishers_signed_and_stops_trusting_what_it_revokes() {
    let root = SecretKey::generate();
    let publisher = SecretKey::generate();
    let holder = PolicyHolder::new(
        policy(1, &root, &publisher, ""),
        TrustStore::new([root.public_key().clone()]),
    );
    let runtime = runtime(&holder);
    let module = publisher
        .sign_module(&sample_bytes("hello", Target::P1))
        .expect("sign");
    let digest = ModuleDigest::of(&module);

    let loaded = runtime.load(&module).expect("signed by the publisher");
    assert_eq!(
        loaded.verified().signers,
        vec![publisher.public_key().id().clone()]
    );
    let mut granted = caps();
    granted.args = vec!["--name".into(), "policy".into()];
    let report = run(&runtime, &module, granted, b"").await;
    assert_eq!(stdout(&report), "hello, policy!\n", "{report:?}");

    // A key the policy does not list as a publisher counts for nothing.
    let stranger = SecretKey::generate()
        .sign_module(&sample_bytes("hello", Target::P2))
        .expect("sign");
    let Err(error) = runtime.load(&stranger) else {
        panic!("not a publisher: refused")
    };
    assert!(matches!(error, LoadError::Policy(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("too few publisher signatures: 0 of 1 needed (not counted: key"),
        "{error}"
    );

    // Version 2 revokes the module: loaded under version 1, it is no longer ready as it is, and
    // loading it again says why.
    let older = holder.replace(policy(1, &root, &publisher, ""));
    assert!(older.is_err(), "a policy version only goes forward");
    holder
        .replace(policy(
            2,
            &root,
            &publisher,
            &format!("revoked_modules = [\"{digest}\"]"),
        ))
        .expect("newer");
    assert!(runtime.loaded(&digest).is_none(), "verified again first");
    let Err(error) = runtime.load(&module) else {
        panic!("revoked: refused")
    };
    assert_eq!(
        error.to_string(),
        format!("refused: module {digest} is revoked by trust policy version 2")
    );
}
