//! Garbage, truncated and oversized messages on the master's Unix socket and
//! slave port get an error, and the master keeps serving everyone else.
#![allow(clippy::err_expect)] // tonic streams have no Debug, so expect_err does not apply

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use proto::v1::{self, exec_in, master_client::MasterClient, slave_link_client::SlaveLinkClient, slave_msg};
use tests::{cluster, run, text, Cluster};
use tonic::transport::{Channel, Endpoint, Uri};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

async fn unix_channel(c: &Cluster) -> Channel {
    let path = c.socket_path().to_path_buf();
    Endpoint::from_static("http://master")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect to the master's socket")
}

fn with_version(v: u32) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut req| {
        req.metadata_mut().insert(proto::VERSION_METADATA, v.into());
        Ok(req)
    }
}

/// Sends one gRPC request whose body is `body` verbatim (a frame header and
/// whatever follows) over raw HTTP/2, and returns the grpc-status code.
async fn raw_grpc<T>(io: T, path: &str, body: Vec<u8>) -> Option<i32>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut h2, conn) = h2::client::handshake(io).await.ok()?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://master{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header(proto::VERSION_METADATA, proto::PROTOCOL_VERSION.to_string())
        .body(())
        .ok()?;
    let (resp, mut stream) = h2.send_request(req, false).ok()?;
    stream.send_data(Bytes::from(body), true).ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.ok()?.ok()?;
    let code = |h: &http::HeaderMap| h.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if let Some(c) = code(resp.headers()) {
        return Some(c);
    }
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let _ = chunk;
    }
    let trailers = body.trailers().await.ok()??;
    code(&trailers)
}

/// A gRPC frame header announcing `len` bytes, followed by only `have` of them.
fn truncated_frame(len: u32, have: usize) -> Vec<u8> {
    let mut b = vec![0u8];
    b.extend_from_slice(&len.to_be_bytes());
    b.extend(std::iter::repeat_n(7u8, have));
    b
}

/// Writes garbage and checks that the server hangs up on us (with or without
/// an HTTP/2 GOAWAY first) instead of waiting forever.
fn garbage_is_refused(mut s: impl Read + Write) {
    let mut junk = b"GET / HTTP/1.0\r\n\r\n".to_vec();
    junk.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    let _ = s.write_all(&junk);
    let mut buf = Vec::new();
    let r = s.read_to_end(&mut buf);
    assert!(
        r.is_ok() || r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server must close the connection: {r:?}"
    );
}

fn master_still_serves(c: &Cluster) {
    let out = run(c.command("bpsh").args(["-ap", "echo", "alive"]));
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), c.nodes() as usize);
    let states = c.node_states().expect("bpstat");
    assert!(states.iter().all(|(_, s)| s == "up"), "{states:?}");
}

#[test]
fn bad_client_input_gets_an_error_and_harms_nothing() {
    let c = cluster(2);
    let s = std::os::unix::net::UnixStream::connect(c.socket_path()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    garbage_is_refused(s);
    master_still_serves(&c);

    rt().block_on(async {
        // A client of another protocol version is refused, naming both versions.
        let ch = unix_channel(&c).await;
        let err = MasterClient::with_interceptor(ch.clone(), with_version(99))
            .nodes(v1::NodesRequest {})
            .await
            .expect_err("version 99 must be refused");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(err.message().contains("client speaks version 99"), "{}", err.message());
        assert!(err.message().contains(&format!("master speaks version {}", proto::PROTOCOL_VERSION)));

        // Oversized: a 5 MiB start message.
        let mut client = MasterClient::with_interceptor(ch.clone(), with_version(proto::PROTOCOL_VERSION))
            .max_encoding_message_size(64 << 20);
        let start = v1::ExecStart { node: 0, argv: vec![vec![b'x'; 5 << 20]], ..Default::default() };
        let msgs = vec![v1::ExecIn { msg: Some(exec_in::Msg::Start(start)) }];
        let err = client.exec(tokio_stream::iter(msgs)).await.expect_err("oversized must be refused");
        assert!(matches!(err.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted), "{err:?}");

        // Claiming a global PID that is not the caller's own is refused.
        let start = v1::ExecStart { node: 0, argv: vec![b"true".to_vec()], pid: 1, ..Default::default() };
        let msgs = vec![v1::ExecIn { msg: Some(exec_in::Msg::Start(start)) }];
        let err = client.exec(tokio_stream::iter(msgs)).await.expect_err("pid 1 is not ours");
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("pid 1 is not the caller's"), "{}", err.message());

        // Becoming the ghost of a process that waits for none is refused.
        let msgs = vec![v1::ExecIn { msg: Some(exec_in::Msg::Attach(v1::Attach { id: 4242 })) }];
        let err = client.exec(tokio_stream::iter(msgs)).await.expect_err("no process 4242");
        assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

        // rfork of a process that is not the caller's child (PID 1), of a
        // process that does not exist, and with a marker that is no pipe.
        let rfork = |pid: i32, marker_fd: i32, move_self: bool| v1::RforkRequest { node: 0, pid, marker_fd, move_self };
        let err = client.rfork(rfork(1, 0, false)).await.expect_err("init is not our child");
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        let err = client.rfork(rfork(1, 0, true)).await.expect_err("init never moves");
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        let err = client.rfork(rfork(i32::MAX, 0, false)).await.expect_err("no such process");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        let mut sleeper = std::process::Command::new("sleep").arg("100").spawn().expect("spawn sleep");
        let err = client.rfork(rfork(sleeper.id() as i32, 99, false)).await.expect_err("fd 99 is not a pipe");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        // vrfork: no copies, a moving copy, and the same process twice; a
        // copy that is not the caller's fails alone.
        let vrfork = |copies: Vec<v1::RforkRequest>| v1::VrforkRequest { copies, ranks: vec![] };
        let err = client.vrfork(vrfork(vec![])).await.expect_err("no copies");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        let err = client.vrfork(vrfork(vec![rfork(1, 0, true)])).await.expect_err("move_self");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        let sleeper_pid = sleeper.id() as i32;
        let reply = client
            .vrfork(vrfork(vec![rfork(1, 0, false), rfork(sleeper_pid, 99, false), rfork(sleeper_pid, 99, false)]))
            .await
            .expect("one result per copy")
            .into_inner();
        let codes: Vec<i32> = reply.results.iter().map(|r| r.code).collect();
        let expected = [tonic::Code::PermissionDenied, tonic::Code::InvalidArgument, tonic::Code::InvalidArgument];
        assert_eq!(codes, expected.map(|c| c as i32), "{reply:?}");
        assert!(reply.results[2].message.contains("named twice"), "{reply:?}");
        let _ = sleeper.kill();
        let _ = sleeper.wait();

        // Stdin before start is refused.
        let msgs = vec![v1::ExecIn { msg: Some(exec_in::Msg::Stdin(v1::StdioData::default())) }];
        let err = client.exec(tokio_stream::iter(msgs)).await.expect_err("no start");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);

        // Truncated: the frame promises 100 bytes and the stream ends after 3.
        let io = tokio::net::UnixStream::connect(c.socket_path()).await.expect("connect");
        let code = raw_grpc(io, "/bproc.v1.Master/Nodes", truncated_frame(100, 3)).await;
        assert!(code.is_some_and(|c| c != 0), "truncated message must fail, got {code:?}");
        // A frame that is not a NodesRequest at all.
        let io = tokio::net::UnixStream::connect(c.socket_path()).await.expect("connect");
        let mut bogus = vec![0u8, 0, 0, 0, 4];
        bogus.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        let code = raw_grpc(io, "/bproc.v1.Master/Nodes", bogus).await;
        assert!(code.is_some_and(|c| c != 0), "undecodable message must fail, got {code:?}");
    });
    master_still_serves(&c);
}

/// Sends `bytes` on a new ghost link, closes our side, and returns the
/// frames the master answered with until it closed its own.
fn ghost_link(c: &Cluster, bytes: &[u8]) -> Vec<v1::ExecOut> {
    let path = c.socket_path().with_file_name(proto::frame::GHOST_SOCKET);
    let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect to the ghosts' socket");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut got = Vec::new();
    let r = s.read_to_end(&mut got);
    // A master that hangs up on bytes it did not read resets the link,
    // after what it wrote.
    assert!(
        r.is_ok() || r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the master must close the link: {r:?}"
    );
    let mut frames = proto::frame::Frames::default();
    frames.push(&got);
    let mut out = Vec::new();
    while let Some(m) = frames.next_message::<v1::ExecOut>().expect("the master's frames decode") {
        out.push(m);
    }
    out
}

/// The master's last word on a link: its error (code, message).
fn refusal(frames: &[v1::ExecOut]) -> (i32, String) {
    match frames.last().and_then(|f| f.msg.clone()) {
        Some(v1::exec_out::Msg::Error(e)) => (e.code, e.message),
        other => panic!("expected an error frame, got {other:?} (all: {frames:?})"),
    }
}

fn with_hello(frames: &[&v1::ExecIn]) -> Vec<u8> {
    let mut b = proto::frame::hello().to_vec();
    for f in frames {
        b.extend(proto::frame::encode(*f));
    }
    b
}

#[test]
fn bad_ghost_link_input_gets_an_error_and_harms_nothing() {
    let c = cluster(2);
    let code = |c: tonic::Code| c as i32;
    // Not a ghost link at all.
    let (c0, why) = refusal(&ghost_link(&c, b"GET / HTTP/1.0\r\n\r\n"));
    assert_eq!((c0, why.contains("bad magic")), (code(tonic::Code::FailedPrecondition), true), "{why}");
    // Another protocol version, named in the answer with ours.
    let mut old = proto::frame::hello();
    old[4..].copy_from_slice(&99u32.to_le_bytes());
    let (c0, why) = refusal(&ghost_link(&c, &old));
    assert_eq!(c0, code(tonic::Code::FailedPrecondition));
    assert!(why.contains("ghost speaks version 99") && why.contains("master speaks version"), "{why}");
    // A frame of 4 GiB; a frame that is no message; a link that ends inside a frame or before start.
    let mut huge = proto::frame::hello().to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(refusal(&ghost_link(&c, &huge)).0, code(tonic::Code::InvalidArgument));
    let mut bogus = proto::frame::hello().to_vec();
    bogus.extend_from_slice(&[4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(refusal(&ghost_link(&c, &bogus)).0, code(tonic::Code::InvalidArgument));
    let mut cut = proto::frame::hello().to_vec();
    cut.extend_from_slice(&[100, 0, 0, 0, 1, 2, 3]);
    assert_eq!(refusal(&ghost_link(&c, &cut)).0, code(tonic::Code::InvalidArgument));
    assert_eq!(refusal(&ghost_link(&c, &proto::frame::hello())).0, code(tonic::Code::InvalidArgument));
    // Stdin before start; a global PID that is not the caller's; the ghost of no process.
    let stdin = v1::ExecIn { msg: Some(exec_in::Msg::Stdin(v1::StdioData::default())) };
    assert_eq!(refusal(&ghost_link(&c, &with_hello(&[&stdin]))).0, code(tonic::Code::InvalidArgument));
    let start = |pid: i32, argv: &[&str]| v1::ExecIn {
        msg: Some(exec_in::Msg::Start(v1::ExecStart {
            node: 0,
            argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            cwd: b"/".to_vec(),
            pid,
            ..Default::default()
        })),
    };
    let (c0, why) = refusal(&ghost_link(&c, &with_hello(&[&start(1, &["true"])])));
    assert_eq!((c0, why.contains("pid 1 is not the caller's")), (code(tonic::Code::PermissionDenied), true), "{why}");
    let attach = v1::ExecIn { msg: Some(exec_in::Msg::Attach(v1::Attach { id: 4242 })) };
    assert_eq!(refusal(&ghost_link(&c, &with_hello(&[&attach]))).0, code(tonic::Code::NotFound));
    // A good start whose link then carries garbage: the process still runs
    // to its end (its output and exit come first), and nothing is left.
    let mut bytes = with_hello(&[&start(0, &["sh", "-c", "echo hi"])]);
    bytes.extend_from_slice(&[9, 0, 0, 0, 0xff]);
    let frames = ghost_link(&c, &bytes);
    let output: Vec<u8> = frames
        .iter()
        .filter_map(|f| match &f.msg {
            Some(v1::exec_out::Msg::Output(d)) => Some(d.data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(output.is_empty() || output == b"hi\n", "{frames:?}");
    tests::wait_for("the master's process table to empty", Duration::from_secs(20), || {
        (text(&run(c.command("bpstat").arg("-p")).stdout).lines().count() <= 1).then_some(())
    });
    master_still_serves(&c);
}

/// Runs `f` on a thread that has entered the cluster's hub network namespace.
fn in_hub<T: Send>(c: &Cluster, f: impl FnOnce() -> T + Send) -> T {
    let ns = std::fs::File::open(format!("/run/netns/{}", c.hub_netns())).expect("hub netns");
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns into the hub");
            f()
        })
        .join()
        .expect("hub thread")
    })
}

fn register(version: u32, node: u32) -> v1::SlaveMsg {
    v1::SlaveMsg {
        msg: Some(slave_msg::Msg::Register(v1::Register {
            protocol_version: version,
            node,
            hostname: "evil".into(),
            software: "test".into(),
            image_port: 0,
            boot_id: String::new(),
        })),
    }
}

#[test]
fn bad_slave_input_gets_an_error_and_harms_nothing() {
    let c = cluster(2);
    let addr = c.master_addr();
    in_hub(&c, || {
        let s = std::net::TcpStream::connect(addr).expect("connect to the slave port");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        garbage_is_refused(s);

        rt().block_on(async {
            let ch = Endpoint::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
            let mut client = SlaveLinkClient::new(ch).max_encoding_message_size(64 << 20);

            let err = client.attach(tokio_stream::iter(vec![register(99, 0)])).await;
            let err = match err {
                Err(e) => e,
                Ok(r) => r.into_inner().message().await.expect_err("refused"),
            };
            assert_eq!(err.code(), tonic::Code::FailedPrecondition);
            assert!(err.message().contains("slave speaks version 99"), "{}", err.message());
            assert!(err.message().contains(&format!("master speaks version {}", proto::PROTOCOL_VERSION)));

            let err = client.attach(tokio_stream::iter(vec![register(proto::PROTOCOL_VERSION, 77)])).await;
            let err = err.err().expect("node 77 must be refused");
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().contains("node 77"), "{}", err.message());

            let hb = v1::SlaveMsg { msg: Some(slave_msg::Msg::Heartbeat(v1::Heartbeat { seq: 1 })) };
            let err = client.attach(tokio_stream::iter(vec![hb])).await.err().expect("must register first");
            assert_eq!(err.code(), tonic::Code::InvalidArgument);

            let mut big = register(proto::PROTOCOL_VERSION, 0);
            if let Some(slave_msg::Msg::Register(r)) = big.msg.as_mut() {
                r.hostname = "x".repeat(5 << 20);
            }
            let err = client.attach(tokio_stream::iter(vec![big])).await.err().expect("oversized");
            assert!(matches!(err.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted), "{err:?}");

            let io = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let code = raw_grpc(io, "/bproc.v1.SlaveLink/Attach", truncated_frame(100, 3)).await;
            assert!(code.is_some_and(|c| c != 0), "truncated register must fail, got {code:?}");

            // An image nobody offered.
            let err = client.fetch_image(v1::FetchImageRequest { image: "../../etc".into() }).await;
            let err = match err {
                Err(e) => e,
                Ok(r) => r.into_inner().message().await.expect_err("no such image"),
            };
            assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

            // A move that does not start with its header, and one of a process
            // that is not on the asking node.
            let chunk = v1::MoveOutChunk { msg: Some(v1::move_out_chunk::Msg::Chunk(v1::ImageChunk::default())) };
            let err = client.move_out(tokio_stream::iter(vec![chunk])).await.expect_err("header first");
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
            let header = v1::MoveOutHeader { id: 1, node: 1, pid: 5, ..Default::default() };
            let msg = v1::MoveOutChunk { msg: Some(v1::move_out_chunk::Msg::Header(header)) };
            let err = client.move_out(tokio_stream::iter(vec![msg])).await.expect_err("no such process here");
            assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        });
    });
    master_still_serves(&c);
}
