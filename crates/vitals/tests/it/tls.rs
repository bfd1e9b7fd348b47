//! HTTPS and mutual TLS with certificates made here (rcgen): a device certificate maps to
//! a device and its patient on HTTPS and on the embedded MQTT listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::harness::{ADMIN, NOW, TestServer, eventually, into_resp};

const OWN: &str = "p-own";

struct Leaf {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca")
}

fn leaf(dir: &Path, name: &str, issuer: &CertifiedIssuer<'static, KeyPair>, server: bool) -> Leaf {
    let key = KeyPair::generate().expect("key");
    let sans = if server { vec!["127.0.0.1".to_owned(), "localhost".to_owned()] } else { Vec::new() };
    let mut p = CertificateParams::new(sans).expect("params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages =
        vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
    let cert = p.signed_by(&key, issuer).expect("sign");
    let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&c, cert.pem()).expect("write");
    std::fs::write(&k, key.serialize_pem()).expect("write");
    Leaf { cert: c, key: k, der: cert.der().to_vec() }
}

struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server: Leaf,
    device: Leaf,
    unregistered: Leaf,
    rogue: Leaf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tmp");
    let root = ca("Vitals test CA");
    let other = ca("Somebody else's CA");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, root.pem()).expect("write");
    Pki {
        ca: ca_path,
        server: leaf(dir.path(), "server", &root, true),
        device: leaf(dir.path(), "band-w1", &root, false),
        unregistered: leaf(dir.path(), "band-w2", &root, false),
        rogue: leaf(dir.path(), "rogue", &other, false),
        _dir: dir,
    }
}

fn https_agent(pki: &Pki, client: Option<&Leaf>) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let ca = Certificate::from_pem(&std::fs::read(&pki.ca).expect("ca")).expect("ca pem");
    let mut tls =
        TlsConfig::builder().provider(TlsProvider::Rustls).root_certs(RootCerts::Specific(Arc::new(vec![ca])));
    if let Some(l) = client {
        let cert = Certificate::from_pem(&std::fs::read(&l.cert).expect("cert")).expect("pem");
        let key = PrivateKey::from_pem(&std::fs::read(&l.key).expect("key")).expect("pem");
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    ureq::Agent::config_builder().tls_config(tls.build()).http_status_as_error(false).build().into()
}

fn tls_server(pki: &Pki) -> TestServer {
    let (cert, key, ca) = (pki.server.cert.clone(), pki.server.key.clone(), pki.ca.clone());
    let server = TestServer::with_config(move |c| {
        c.server.tls_cert = cert;
        c.server.tls_key = key;
        c.server.tls_client_ca = ca;
        c.mqtt_listener.enabled = true;
        c.mqtt_listener.listen = "127.0.0.1:0".into();
    });
    server.app.directory.register_cert("wristband w1", "w1", Some(OWN), &pki.device.der, NOW).expect("register");
    server
}

fn https_url(server: &TestServer, path: &str) -> String {
    format!("{}{path}", server.url.replacen("http://", "https://", 1))
}

#[test]
fn https_serves_tls_and_a_registered_client_certificate_authenticates_its_device_for_its_patient() {
    let pki = pki();
    let server = tls_server(&pki);
    let samples =
        |p: &str| json!([{"patient": p, "metric": "heart_rate", "time": NOW - 1000, "value": 64}]).to_string();
    let post = |agent: &ureq::Agent, body: String, token: Option<&str>| {
        let mut req = agent.post(&https_url(&server, "/api/v1/samples")).header("Content-Type", "application/json");
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        req.send(body).map(into_resp)
    };
    // The device's certificate alone is its credential, for its own patient only.
    let device = https_agent(&pki, Some(&pki.device));
    let r = post(&device, samples(OWN), None).expect("https");
    assert_eq!((r.status, r.json()["accepted"].clone()), (200, json!(1)), "{}", r.body);
    let r = post(&device, samples("p-other"), None).expect("https");
    assert_eq!(r.json()["rejected"][0]["code"], "patient_not_allowed", "{}", r.body);
    let r = device.get(&https_url(&server, "/api/v1/patients")).call().map(into_resp).expect("https");
    assert_eq!(r.status, 403, "a device writes only: {}", r.body);
    // Without a certificate: tokens work over HTTPS, nothing else does.
    let anonymous = https_agent(&pki, None);
    assert_eq!(post(&anonymous, samples(OWN), None).expect("https").status, 401);
    assert_eq!(post(&anonymous, samples(OWN), Some(ADMIN)).expect("https").status, 200);
    // A certificate of our CA that no device was registered with is not a credential.
    let stranger = https_agent(&pki, Some(&pki.unregistered));
    assert_eq!(post(&stranger, samples(OWN), None).expect("https").status, 401);
    // A certificate from another CA does not even complete the handshake.
    assert!(post(&https_agent(&pki, Some(&pki.rogue)), samples(OWN), None).is_err(), "rogue client certificate");
    // TLS 1.2 and 1.3 are spoken, 1.1 is not (openssl is installed by scripts/test).
    let port = server.url.rsplit(':').next().expect("port").to_owned();
    let handshake = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-CAfile"])
            .arg(&pki.ca)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl s_client");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(handshake(&["-tls1_2"]).contains("New, TLSv1.2"), "TLS 1.2");
    assert!(handshake(&["-tls1_3"]).contains("New, TLSv1.3"), "TLS 1.3");
    // The client allows TLS 1.1 (security level 0); the server refuses it.
    let old = handshake(&["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(old.contains("Cipher is (NONE)") && !old.contains("New, TLSv1.1"), "TLS 1.1 must be refused: {old}");
    // Plain HTTP to the HTTPS port gets no answer.
    let plain = crate::harness::agent().get(&format!("{}/healthz", server.url)).call();
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200), "plain HTTP must not be served");
    // Over TLS the session cookie is Secure.
    server
        .app
        .directory
        .create_user("nurse", vitals::auth::Role::Clinician, Some("correct horse battery"), None, NOW)
        .expect("u");
    let r = anonymous
        .post(&https_url(&server, "/api/v1/login"))
        .header("Content-Type", "application/json")
        .send(r#"{"name":"nurse","password":"correct horse battery"}"#)
        .map(into_resp)
        .expect("login");
    assert!(r.set_cookie.as_deref().is_some_and(|c| c.contains("; Secure")), "{:?}", r.set_cookie);
    // Revoked, the certificate stops working at the next request.
    let id = server.app.directory.meta().device_certs().expect("certs")[0].id.clone();
    assert!(server.app.directory.meta().revoke_device_cert(&id, NOW).expect("revoke"));
    assert_eq!(post(&https_agent(&pki, Some(&pki.device)), samples(OWN), None).expect("https").status, 401);
}

fn mqtt_client_config(pki: &Pki, client: &Leaf) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&pki.ca).expect("ca")).expect("root");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&client.cert).expect("cert").collect::<Result<_, _>>().expect("pem");
    let key = PrivateKeyDer::from_pem_file(&client.key).expect("key");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client cert")
}

/// Connects with a client certificate and publishes one QoS 1 message: Ok once PUBACKed,
/// Err with what happened instead.
fn mqtt_publish(
    addr: std::net::SocketAddr,
    tls: rustls::ClientConfig,
    topic: &str,
    payload: String,
) -> Result<(), String> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async move {
        let mut opts = MqttOptions::new("band-w1", "127.0.0.1", addr.port());
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls))));
        let (client, mut events) = AsyncClient::new(opts, 10);
        client.publish(topic, QoS::AtLeastOnce, false, payload).await.map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            match tokio::time::timeout_at(deadline, events.poll()).await {
                Err(_) => return Err("no PUBACK in time".to_owned()),
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.to_string()),
            }
        }
    })
}

#[test]
fn the_mqtt_listener_takes_samples_from_certified_devices_for_their_patient_only() {
    let pki = pki();
    let server = tls_server(&pki);
    eventually("the MQTT listener is up", || server.app.mqtt_listener_addr.get().is_some());
    let addr = *server.app.mqtt_listener_addr.get().expect("listener address");
    let payload =
        |v: u32| json!([{"patient": OWN, "metric": "heart_rate", "time": NOW - 2000, "value": v}]).to_string();
    mqtt_publish(addr, mqtt_client_config(&pki, &pki.device), &format!("vitals/{OWN}/samples"), payload(77))
        .expect("PUBACK for the device's own patient");
    // (This server's HTTP side speaks TLS, so the harness reads the store directly.)
    eventually("the MQTT sample is stored", || {
        server.store.has_patient(&vitals_core::PatientId::new(OWN).expect("id"))
    });
    // Another patient's topic: the connection is closed, nothing acknowledged or stored.
    let other = mqtt_publish(addr, mqtt_client_config(&pki, &pki.device), "vitals/p-other/samples", payload(78));
    assert!(other.is_err(), "publishing for another patient must fail");
    assert!(!server.store.has_patient(&vitals_core::PatientId::new("p-other").expect("id")));
    // A certificate of our CA but not registered: refused at CONNECT.
    let stranger =
        mqtt_publish(addr, mqtt_client_config(&pki, &pki.unregistered), &format!("vitals/{OWN}/samples"), payload(79));
    assert!(stranger.is_err_and(|e| e.contains("BadUserNamePassword") || e.contains("refused")), "unregistered cert");
    // Another CA: no handshake.
    assert!(
        mqtt_publish(addr, mqtt_client_config(&pki, &pki.rogue), &format!("vitals/{OWN}/samples"), payload(80))
            .is_err()
    );
}
