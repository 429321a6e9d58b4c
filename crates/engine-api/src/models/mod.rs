//! Typed response bodies of the Engine API: the wire format Docker clients (the docker CLI,
//! docker-py, bollard) read. Bollard's generated models (`bollard_stubs::models`) are used where
//! they serialize exactly as Docker does; they skip every `None` field, so where Docker always
//! sends a key, even as `null` (container inspect, `/info`, volume labels…), or where a model
//! lacks a key Docker still sends (`VirtualSize`), the body is a struct of this module.
//! `tests/shapes.rs` pins the key set and types of each body.

pub mod container;
pub mod exec;
pub mod image;
pub mod plugin;
pub mod stats;
pub mod system;
pub mod volume;

/// `{"Id": …}`: the body of `POST /containers/{id}/exec`. (Bollard's `IdResponse` only reads
/// `Id`; it writes `id`.)
#[derive(Debug, Clone, serde::Serialize)]
pub struct IdResponse {
    #[serde(rename = "Id")]
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_response_writes_docker_key() {
        let v = serde_json::to_value(IdResponse { id: "x".into() }).unwrap_or_default();
        assert_eq!(v, serde_json::json!({"Id": "x"}));
    }

    #[test]
    fn exec_inspect_keeps_a_null_exit_code() {
        let body = exec::ExecInspect {
            id: "e".into(),
            running: true,
            exit_code: None,
            process_config: bollard_stubs::models::ProcessConfig {
                privileged: Some(false),
                user: Some(String::new()),
                tty: Some(false),
                entrypoint: Some("sh".into()),
                arguments: Some(Vec::new()),
            },
            open_stdin: false,
            open_stderr: true,
            open_stdout: true,
            can_remove: false,
            container_id: "c".into(),
            detach_keys: String::new(),
            pid: 7,
        };
        let v = serde_json::to_value(body).unwrap_or_default();
        assert!(
            v.get("ExitCode").is_some_and(serde_json::Value::is_null),
            "{v}"
        );
        let pc = &v["ProcessConfig"];
        for key in ["tty", "entrypoint", "arguments", "privileged", "user"] {
            assert!(pc.get(key).is_some(), "ProcessConfig lacks {key}: {v}");
        }
        for key in [
            "ID",
            "Running",
            "OpenStdin",
            "OpenStderr",
            "OpenStdout",
            "CanRemove",
            "ContainerID",
            "DetachKeys",
            "Pid",
        ] {
            assert!(v.get(key).is_some(), "exec inspect lacks {key}: {v}");
        }
    }

    #[test]
    fn plugin_stream_lines_keep_their_shape() {
        use plugin::OpLine;
        let text = |l: OpLine| serde_json::to_string(&l).unwrap_or_default();
        assert_eq!(text(OpLine::Status("s".into())), r#"{"Status":"s"}"#);
        assert_eq!(
            text(OpLine::Progress("p (1s)".into())),
            r#"{"Progress":"p (1s)"}"#
        );
        let err = OpLine::Error {
            error: "boom".into(),
            code: 409,
        };
        assert_eq!(text(err), r#"{"Error":"boom","Code":409}"#);
    }
}
