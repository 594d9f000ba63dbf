//! The smallest static x86_64 Linux executable: `exit(0)`, 129 bytes. `proc.spawn` spawns
//! it, as Exo-OS's `/ubench` spawns `/empty`; the peer writes it into the initramfs's root at
//! start-up, so the archive holds one program only.

/// Where the program is loaded.
const BASE: u64 = 0x40_0000;
/// ELF header (64) + one program header (56).
const CODE_OFFSET: usize = 64 + 56;
/// `mov eax, 60` (exit); `xor edi, edi`; `syscall`.
const CODE: [u8; 9] = [0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05];

/// The executable's bytes.
pub fn image() -> Vec<u8> {
    let total = (CODE_OFFSET + CODE.len()) as u64;
    let mut v = Vec::with_capacity(total as usize);
    // e_ident: magic, ELFCLASS64, little endian, version 1, System V ABI, padding.
    v.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    v.extend_from_slice(&0x3eu16.to_le_bytes()); // e_machine: x86-64
    v.extend_from_slice(&1u32.to_le_bytes()); // e_version
    v.extend_from_slice(&(BASE + CODE_OFFSET as u64).to_le_bytes()); // e_entry
    v.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    v.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    v.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    v.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    v.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    v.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    v.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    v.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    v.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    v.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    v.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R + X
    v.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    v.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    v.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    v.extend_from_slice(&total.to_le_bytes()); // p_filesz
    v.extend_from_slice(&total.to_le_bytes()); // p_memsz
    v.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    debug_assert_eq!(v.len(), CODE_OFFSET);
    v.extend_from_slice(&CODE);
    v
}

/// Writes the program to `path`, mode 0755.
pub fn install(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, image())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_program_runs_and_exits_zero() {
        let dir = std::env::temp_dir().join(format!("exo-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty");
        super::install(&path).unwrap();
        assert_eq!(super::image().len(), 129);
        let st = std::process::Command::new(&path).status().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(st.code(), Some(0));
    }
}
