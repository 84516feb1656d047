//! tracefs: make sure it is mounted, and read tracepoint record layouts from its `format` files.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::ProbeError;

/// Where tracefs lives on current kernels.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Mounts tracefs on [`TRACEFS`] unless its `events` directory is already there. aya finds
/// tracepoint ids through it, and the loader reads record layouts from it.
pub fn ensure_mounted() -> Result<(), ProbeError> {
    let root = Path::new(TRACEFS);
    if root.join("events").is_dir() {
        return Ok(());
    }
    nix::mount::mount(Some("tracefs"), root, Some("tracefs"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|source| ProbeError::MountTracefs { path: root.to_path_buf(), source })
}

/// One field of a tracepoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: u32,
    pub size: u32,
}

/// The record layout of one tracepoint, from `events/<group>/<event>/format`.
#[derive(Debug, Clone)]
pub struct Format {
    pub path: PathBuf,
    pub fields: Vec<Field>,
}

impl Format {
    /// Reads and parses the format file of `group/event` under [`TRACEFS`].
    pub fn read(group: &str, event: &str) -> Result<Self, ProbeError> {
        let path = Path::new(TRACEFS).join("events").join(group).join(event).join("format");
        let text = fs::read_to_string(&path).map_err(|source| ProbeError::Read { path: path.clone(), source })?;
        Ok(Self::parse(path, &text))
    }

    /// Parses the text of a format file. Lines look like
    /// `\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;`; arrays (`char comm[16]`) keep their base
    /// name.
    pub fn parse(path: PathBuf, text: &str) -> Self {
        let fields = text.lines().filter_map(parse_field_line).collect();
        Self { path, fields }
    }

    /// The byte offset of field `name`, checked to be `size` bytes wide.
    pub fn offset(&self, name: &str, size: u32) -> Result<u32, ProbeError> {
        let field = self
            .fields
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| ProbeError::Format { path: self.path.clone(), reason: format!("no field `{name}`") })?;
        if field.size != size {
            return Err(ProbeError::Format {
                path: self.path.clone(),
                reason: format!("field `{name}` is {} bytes, the probes expect {size}", field.size),
            });
        }
        Ok(field.offset)
    }
}

fn parse_field_line(line: &str) -> Option<Field> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    for part in line.split(';').map(str::trim) {
        if let Some(d) = part.strip_prefix("field:") {
            decl = Some(d);
        } else if let Some(o) = part.strip_prefix("offset:") {
            offset = o.parse().ok();
        } else if let Some(s) = part.strip_prefix("size:") {
            size = s.parse().ok();
        }
    }
    let last = decl?.split_whitespace().last()?;
    let name = last.split('[').next()?.to_owned();
    Some(Field { name, offset: offset?, size: size? })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXIT: &str = "name: sched_process_exit\nID: 369\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
        \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
        \tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
        \tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n\n\
        print fmt: \"comm=%s pid=%d\", REC->comm, REC->pid\n";

    #[test]
    fn parses_fields_and_checks_sizes() {
        let f = Format::parse(PathBuf::from("x"), EXIT);
        assert_eq!(f.offset("group_dead", 1).ok(), Some(32));
        assert_eq!(f.offset("pid", 4).ok(), Some(24));
        assert_eq!(f.offset("comm", 16).ok(), Some(8));
        assert!(f.offset("pid", 8).is_err());
        assert!(f.offset("nope", 4).is_err());
    }
}
