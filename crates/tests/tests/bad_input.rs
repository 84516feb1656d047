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
