//! A small reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): just enough to find the byte
//! offset of a member of a named struct, following anonymous struct/union members (randomized or
//! grouped layouts) and checking the member's size. The probes are plain (non-CO-RE) BPF, so the
//! loader resolves `task_struct` offsets here and passes them in.

use std::{fs, path::Path};

use crate::ProbeError;

/// The kernel's own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset from the start of the enclosing struct.
    bit_offset: u32,
    /// Non-zero for a bitfield.
    bitfield_size: u32,
}

#[derive(Debug, Clone)]
struct Type {
    kind: u32,
    name_off: u32,
    /// `size` for INT/STRUCT/UNION/ENUM, `type` for PTR/TYPEDEF/CONST/... .
    size_or_type: u32,
    members: Vec<Member>,
}

/// Parsed BTF: the types (index = type id; id 0 is void) and the string section.
#[derive(Debug)]
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
}

fn bad(reason: impl Into<String>) -> ProbeError {
    ProbeError::Btf { path: VMLINUX_BTF.into(), reason: reason.into() }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, ProbeError> {
        let bytes = self.data.get(self.pos..self.pos + 4).ok_or_else(|| bad("truncated type section"))?;
        self.pos += 4;
        Ok(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn skip(&mut self, n: usize) -> Result<(), ProbeError> {
        if self.pos + n > self.data.len() {
            return Err(bad("truncated type section"));
        }
        self.pos += n;
        Ok(())
    }
}

impl Btf {
    /// Reads [`VMLINUX_BTF`].
    pub fn from_kernel() -> Result<Self, ProbeError> {
        let path = Path::new(VMLINUX_BTF);
        let data = fs::read(path).map_err(|source| ProbeError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&data)
    }

    /// Parses raw BTF in the host's byte order (as the running kernel exposes it).
    pub fn parse(data: &[u8]) -> Result<Self, ProbeError> {
        let word = |at: usize| -> Result<u32, ProbeError> {
            let b = data.get(at..at + 4).ok_or_else(|| bad("truncated header"))?;
            Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let magic = data.get(0..2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
        if magic != Some(MAGIC) {
            return Err(bad("bad magic (not BTF, or the other byte order)"));
        }
        let hdr_len = word(4)? as usize;
        let (type_off, type_len) = (word(8)? as usize, word(12)? as usize);
        let (str_off, str_len) = (word(16)? as usize, word(20)? as usize);
        let types_bytes = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or_else(|| bad("type section out of bounds"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or_else(|| bad("string section out of bounds"))?
            .to_vec();

        let mut types = vec![Type { kind: 0, name_off: 0, size_or_type: 0, members: Vec::new() }];
        let mut r = Reader { data: types_bytes, pos: 0 };
        while r.pos < types_bytes.len() {
            let name_off = r.u32()?;
            let info = r.u32()?;
            let size_or_type = r.u32()?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => r.skip(4)?,
                KIND_ARRAY => r.skip(12)?,
                KIND_STRUCT | KIND_UNION => {
                    for _ in 0..vlen {
                        let name_off = r.u32()?;
                        let type_id = r.u32()?;
                        let offset = r.u32()?;
                        let (bit_offset, bitfield_size) =
                            if kind_flag { (offset & 0xff_ffff, offset >> 24) } else { (offset, 0) };
                        members.push(Member { name_off, type_id, bit_offset, bitfield_size });
                    }
                }
                KIND_ENUM | KIND_FUNC_PROTO => r.skip(8 * vlen)?,
                KIND_DATASEC | KIND_ENUM64 => r.skip(12 * vlen)?,
                0..=19 => {}
                other => return Err(bad(format!("unknown BTF kind {other}"))),
            }
            types.push(Type { kind, name_off, size_or_type, members });
        }
        Ok(Self { types, strings })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    fn ty(&self, id: u32) -> Result<&Type, ProbeError> {
        self.types.get(id as usize).ok_or_else(|| bad(format!("type id {id} out of range")))
    }

    /// Size in bytes of a type, through typedefs and qualifiers.
    fn size_of(&self, mut id: u32) -> Result<u32, ProbeError> {
        for _ in 0..32 {
            let t = self.ty(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => id = t.size_or_type,
                KIND_PTR => return Ok(8),
                _ => return Ok(t.size_or_type),
            }
        }
        Err(bad("type chain too long"))
    }

    fn struct_id(&self, name: &str) -> Result<usize, ProbeError> {
        self.types
            .iter()
            .position(|t| t.kind == KIND_STRUCT && !t.members.is_empty() && self.name(t.name_off) == name.as_bytes())
            .ok_or_else(|| bad(format!("no struct {name}")))
    }

    /// Size in bytes of `struct name`.
    pub fn struct_size(&self, name: &str) -> Result<u32, ProbeError> {
        Ok(self.types[self.struct_id(name)?].size_or_type)
    }

    /// Byte offset of member `member` of `struct name`, checked to be `size` bytes wide (any size
    /// when `None`, say for a flexible array or a nested struct) and not a bitfield. Members of
    /// anonymous structs/unions inside the struct are found too.
    pub fn member_offset(&self, name: &str, member: &str, size: impl Into<Option<u32>>) -> Result<u32, ProbeError> {
        let id = self.struct_id(name)?;
        let (bits, m) = self
            .find_member(id as u32, member.as_bytes(), 0, 0)?
            .ok_or_else(|| bad(format!("struct {name} has no member {member}")))?;
        if m.bitfield_size != 0 || bits % 8 != 0 {
            return Err(bad(format!("{name}.{member} is a bitfield")));
        }
        if let Some(size) = size.into() {
            let actual = self.size_of(m.type_id)?;
            if actual != size {
                return Err(bad(format!("{name}.{member} is {actual} bytes, the probes expect {size}")));
            }
        }
        Ok(bits / 8)
    }

    fn find_member(
        &self,
        id: u32,
        member: &[u8],
        base_bits: u32,
        depth: u32,
    ) -> Result<Option<(u32, Member)>, ProbeError> {
        if depth > 8 {
            return Ok(None);
        }
        let t = self.ty(id)?;
        for m in &t.members {
            if self.name(m.name_off) == member {
                return Ok(Some((base_bits + m.bit_offset, *m)));
            }
        }
        for m in t.members.iter().filter(|m| m.name_off == 0) {
            let inner = self.ty(m.type_id)?;
            if matches!(inner.kind, KIND_STRUCT | KIND_UNION) {
                if let Some(found) = self.find_member(m.type_id, member, base_bits + m.bit_offset, depth + 1)? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }
}
