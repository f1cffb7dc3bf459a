//! Bounds-checked access to guest memory. Every pointer and length a guest passes goes through
//! here; a range that does not fit (including one whose end overflows) is `EFAULT`.

use crate::abi::{Errno, IOVEC_SIZE};

/// A view of the guest's linear memory for the duration of one [`crate::WasiHost::with`].
pub struct GuestMemory<'a> {
    bytes: &'a mut [u8],
}

/// One `iovec`/`ciovec`: a guest buffer, already checked to lie inside memory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IoVec {
    pub ptr: u32,
    pub len: u32,
}

impl<'a> GuestMemory<'a> {
    /// Wraps the guest's memory bytes.
    pub fn new(bytes: &'a mut [u8]) -> Self {
        GuestMemory { bytes }
    }

    fn range(&self, ptr: u32, len: u32) -> Result<std::ops::Range<usize>, Errno> {
        let start = ptr as usize;
        let end = start.checked_add(len as usize).ok_or(Errno::Fault)?;
        if end > self.bytes.len() {
            return Err(Errno::Fault);
        }
        Ok(start..end)
    }

    /// The `len` bytes at `ptr`.
    pub fn slice(&self, ptr: u32, len: u32) -> Result<&[u8], Errno> {
        let range = self.range(ptr, len)?;
        Ok(&self.bytes[range])
    }

    /// The `len` bytes at `ptr`, writable.
    pub fn slice_mut(&mut self, ptr: u32, len: u32) -> Result<&mut [u8], Errno> {
        let range = self.range(ptr, len)?;
        Ok(&mut self.bytes[range])
    }

    fn array<const N: usize>(&self, ptr: u32) -> Result<[u8; N], Errno> {
        let mut out = [0; N];
        out.copy_from_slice(self.slice(ptr, N as u32)?);
        Ok(out)
    }

    /// Reads a byte at `ptr`.
    pub fn read_u8(&self, ptr: u32) -> Result<u8, Errno> {
        Ok(self.array::<1>(ptr)?[0])
    }
    /// Reads a little-endian `u16` at `ptr`.
    pub fn read_u16(&self, ptr: u32) -> Result<u16, Errno> {
        Ok(u16::from_le_bytes(self.array(ptr)?))
    }
    /// Reads a little-endian `u32` at `ptr`.
    pub fn read_u32(&self, ptr: u32) -> Result<u32, Errno> {
        Ok(u32::from_le_bytes(self.array(ptr)?))
    }
    /// Reads a little-endian `u64` at `ptr`.
    pub fn read_u64(&self, ptr: u32) -> Result<u64, Errno> {
        Ok(u64::from_le_bytes(self.array(ptr)?))
    }

    /// Copies `bytes` to `ptr`.
    pub fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), Errno> {
        let len = u32::try_from(bytes.len()).map_err(|_| Errno::Fault)?;
        self.slice_mut(ptr, len)?.copy_from_slice(bytes);
        Ok(())
    }
    /// Writes a byte at `ptr`.
    pub fn write_u8(&mut self, ptr: u32, v: u8) -> Result<(), Errno> {
        self.write(ptr, &[v])
    }
    /// Writes a little-endian `u16` at `ptr`.
    pub fn write_u16(&mut self, ptr: u32, v: u16) -> Result<(), Errno> {
        self.write(ptr, &v.to_le_bytes())
    }
    /// Writes a little-endian `u32` at `ptr`.
    pub fn write_u32(&mut self, ptr: u32, v: u32) -> Result<(), Errno> {
        self.write(ptr, &v.to_le_bytes())
    }
    /// Writes a little-endian `u64` at `ptr`.
    pub fn write_u64(&mut self, ptr: u32, v: u64) -> Result<(), Errno> {
        self.write(ptr, &v.to_le_bytes())
    }

    /// The guest string at `ptr` (`len` bytes, no terminator); not UTF-8 is `EILSEQ`.
    pub fn read_str(&self, ptr: u32, len: u32) -> Result<String, Errno> {
        let bytes = self.slice(ptr, len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Errno::Ilseq)
    }

    /// The `count` iovecs at `ptr`, each buffer checked to lie inside memory.
    pub(crate) fn read_iovecs(&self, ptr: u32, count: u32) -> Result<Vec<IoVec>, Errno> {
        let size = count.checked_mul(IOVEC_SIZE).ok_or(Errno::Fault)?;
        self.slice(ptr, size)?;
        let mut iovs = Vec::with_capacity(count as usize);
        for i in 0..count {
            let at = ptr + i * IOVEC_SIZE;
            let iov = IoVec {
                ptr: self.read_u32(at)?,
                len: self.read_u32(at + 4)?,
            };
            self.slice(iov.ptr, iov.len)?;
            iovs.push(iov);
        }
        Ok(iovs)
    }

    /// The bytes of `iovs` concatenated (what a write sends), at most `limit` of them.
    pub(crate) fn gather(&self, iovs: &[IoVec], limit: usize) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        for iov in iovs {
            let remaining = limit - out.len();
            let bytes = self.slice(iov.ptr, iov.len)?;
            out.extend_from_slice(&bytes[..bytes.len().min(remaining)]);
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Spreads `data` over `iovs` in order (what a read fills).
    pub(crate) fn scatter(&mut self, iovs: &[IoVec], mut data: &[u8]) -> Result<(), Errno> {
        for iov in iovs {
            if data.is_empty() {
                break;
            }
            let n = data.len().min(iov.len as usize);
            self.write(iov.ptr, &data[..n])?;
            data = &data[n..];
        }
        Ok(())
    }
}

/// The total length of `iovs`, capped so one call moves at most `u32::MAX` bytes (the result
/// must fit the guest's `size`).
pub(crate) fn total_len(iovs: &[IoVec]) -> usize {
    iovs.iter()
        .fold(0usize, |sum, iov| sum.saturating_add(iov.len as usize))
        .min(u32::MAX as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_past_the_end_is_efault() {
        let mut bytes = vec![0u8; 16];
        let memory = GuestMemory::new(&mut bytes);
        assert_eq!(memory.slice(8, 8).map(|s| s.len()), Ok(8));
        assert_eq!(memory.slice(8, 9).err(), Some(Errno::Fault));
        assert_eq!(memory.read_u32(13).err(), Some(Errno::Fault));
    }

    #[test]
    fn range_whose_end_overflows_is_efault() {
        let mut bytes = vec![0u8; 16];
        let memory = GuestMemory::new(&mut bytes);
        assert_eq!(memory.slice(u32::MAX, 2).err(), Some(Errno::Fault));
        assert_eq!(memory.read_iovecs(0, u32::MAX).err(), Some(Errno::Fault));
    }

    #[test]
    fn iovec_pointing_outside_memory_is_efault() {
        let mut bytes = vec![0u8; 32];
        bytes[0..4].copy_from_slice(&30u32.to_le_bytes());
        bytes[4..8].copy_from_slice(&4u32.to_le_bytes());
        let memory = GuestMemory::new(&mut bytes);
        assert_eq!(memory.read_iovecs(0, 1).err(), Some(Errno::Fault));
    }

    #[test]
    fn invalid_utf8_path_is_eilseq() {
        let mut bytes = vec![0xffu8; 4];
        let memory = GuestMemory::new(&mut bytes);
        assert_eq!(memory.read_str(0, 4).err(), Some(Errno::Ilseq));
    }
}
