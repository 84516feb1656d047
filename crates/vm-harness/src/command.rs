//! Running short helper commands (`ip`, `bpstat`) to completion, with their failures turned into
//! [`HarnessError`]s that name the command and quote its stderr.

use std::io::Write;
use std::process::{Child, Command, Stdio};

use crate::error::HarnessError;

/// The command line of `cmd`, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Starts `cmd` with `input` on its stdin (or /dev/null) and stdout/stderr captured.
pub(crate) fn spawn_with_input(cmd: &mut Command, input: Option<&str>) -> Result<Child, HarnessError> {
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn { command: describe(cmd), source })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A write error means the command died early; its exit status says why.
        let _ = stdin.write_all(text.as_bytes());
    }
    Ok(child)
}

/// Waits for a child started by [`spawn_with_input`]; returns its stdout if it exited with 0.
pub(crate) fn finish(child: Child, command: String) -> Result<String, HarnessError> {
    let output = child.wait_with_output().map_err(|source| HarnessError::Spawn { command: command.clone(), source })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(HarnessError::CommandFailed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Runs `cmd` to completion with `input` on stdin; returns its stdout if it exited with 0.
pub(crate) fn run(cmd: &mut Command, input: Option<&str>) -> Result<String, HarnessError> {
    let child = spawn_with_input(cmd, input)?;
    finish(child, describe(cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_returns_stdout() {
        let out = run(&mut Command::new("cat"), Some("hello\n")).expect("cat");
        assert_eq!(out, "hello\n");
    }

    #[test]
    fn failure_names_the_command_and_quotes_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo oops >&2; exit 3"]);
        let err = run(&mut cmd, None).expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("sh -c echo oops >&2; exit 3"), "{text}");
        assert!(text.contains("oops"), "{text}");
    }

    #[test]
    fn missing_program() {
        let err = run(&mut Command::new("/nonexistent/prog"), None).expect_err("must fail");
        assert!(matches!(err, HarnessError::Spawn { .. }), "{err}");
    }
}
