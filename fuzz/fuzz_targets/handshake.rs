//! The login parsers: the server greeting, the client's handshake response
//! and SSL request, and COM_CHANGE_USER, each fed the same bytes. None may
//! panic; what they return was read from the input, so it is no longer than
//! the input; and a greeting or response of the shape real peers send,
//! written back out, parses to the same value (the proxy writes both).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mysql_common::constants::CapabilityFlags as Caps;
use rwsplit::protocol::handshake::{ChangeUser, Greeting, HandshakeResponse};

fuzz_target!(|data: &[u8]| {
    if let Some(g) = Greeting::parse(data) {
        check_greeting(data, &g);
    }
    if let Some(r) = HandshakeResponse::parse(data) {
        check_response(data, &r);
    }
    if let Some(r) = HandshakeResponse::parse_ssl_request(data) {
        assert!(r.user.is_empty() && r.auth_response.is_empty());
    }
    for caps in [Caps::all(), Caps::empty(), Caps::CLIENT_SECURE_CONNECTION] {
        if let Some(c) = ChangeUser::parse(data, caps) {
            let read = c.user.len()
                + c.auth_response.len()
                + c.database.len()
                + c.auth_plugin.as_ref().map_or(0, Vec::len)
                + c.attributes.as_ref().map_or(0, Vec::len);
            assert!(read <= data.len(), "change user: {read} bytes from {}", data.len());
        }
    }
});

fn check_greeting(data: &[u8], g: &Greeting) {
    let plugin_read = g.capabilities.contains(Caps::CLIENT_PLUGIN_AUTH);
    let read = g.server_version.len()
        + g.scramble.len()
        + if plugin_read { g.auth_plugin.len() } else { 0 };
    assert!(read <= data.len(), "greeting: {read} bytes from {}", data.len());
    // Every server sends a 20-byte scramble in two parts.
    if g.capabilities.contains(Caps::CLIENT_SECURE_CONNECTION) && g.scramble.len() == 20 {
        let mut out = Vec::new();
        g.write(&mut out);
        assert_eq!(Greeting::parse(&out).as_ref(), Some(g), "greeting written as {out:02x?}");
    }
}

fn check_response(data: &[u8], r: &HandshakeResponse) {
    let read = r.user.len()
        + r.auth_response.len()
        + r.database.as_ref().map_or(0, Vec::len)
        + r.auth_plugin.as_ref().map_or(0, Vec::len)
        + r.attributes.as_ref().map_or(0, Vec::len);
    assert!(read <= data.len(), "handshake response: {read} bytes from {}", data.len());
    // The shape clients send: the auth data length-encoded or short, and
    // each optional field present exactly when its flag is set.
    let caps = r.capabilities;
    let auth_fits = caps.contains(Caps::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
        || (caps.contains(Caps::CLIENT_SECURE_CONNECTION) && r.auth_response.len() < 256);
    let complete = r.database.is_some() == caps.contains(Caps::CLIENT_CONNECT_WITH_DB)
        && r.auth_plugin.is_some() == caps.contains(Caps::CLIENT_PLUGIN_AUTH)
        && r.attributes.is_some() == caps.contains(Caps::CLIENT_CONNECT_ATTRS);
    if auth_fits && complete {
        let mut out = Vec::new();
        r.write(&mut out);
        assert_eq!(HandshakeResponse::parse(&out).as_ref(), Some(r), "written as {out:02x?}");
    }
}
