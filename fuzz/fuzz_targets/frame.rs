//! The frame decoder and every message parser, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pki_common::proto::handshake::request_session_id;
use pki_common::proto::message::{
    decode, Alert, Hello, Registration, Response, Sealed, ServerProof, ServiceRequest,
    SessionGranted, SessionSealed,
};
use pki_common::proto::{Frame, Kind, DEFAULT_MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data, DEFAULT_MAX_FRAME) {
        let _ = request_session_id(&frame);
        let _ = frame.require(Kind::Hello);
    }
    let _ = decode::<Hello>(data, "hello");
    let _ = decode::<ServerProof>(data, "proof");
    let _ = decode::<Sealed>(data, "sealed");
    let _ = decode::<SessionSealed>(data, "session sealed");
    let _ = decode::<Registration>(data, "registration");
    let _ = decode::<SessionGranted>(data, "granted");
    let _ = decode::<ServiceRequest>(data, "request");
    let _ = decode::<Response>(data, "response");
    let _ = decode::<Alert>(data, "alert");
});
