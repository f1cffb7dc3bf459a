//! A small seeded generator (SplitMix64) and the byte-level input generator and mutator.

/// SplitMix64: tiny, fast, and good enough to pick inputs and mutations.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Random bytes of a length biased to short (most wasm-smith modules need a few hundred).
    pub fn fresh_input(&mut self) -> Vec<u8> {
        let len = match self.below(4) {
            0 => self.below(64),
            1 => self.below(512),
            2 => self.below(2048),
            _ => self.below(8192),
        } as usize;
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// `base` changed by one to eight byte-level edits, sometimes spliced with `other`.
    pub fn mutate(&mut self, base: &[u8], other: &[u8]) -> Vec<u8> {
        let mut bytes = base.to_vec();
        for _ in 0..=self.below(8) {
            let len = bytes.len() as u64;
            match self.below(6) {
                0 if len > 0 => {
                    let i = self.below(len) as usize;
                    bytes[i] ^= 1 << self.below(8);
                }
                1 if len > 0 => {
                    let i = self.below(len) as usize;
                    bytes[i] = self.next_u64() as u8;
                }
                2 => {
                    let i = self.below(len + 1) as usize;
                    let chunk: Vec<u8> = (0..=self.below(16))
                        .map(|_| self.next_u64() as u8)
                        .collect();
                    bytes.splice(i..i, chunk);
                }
                3 if len > 0 => {
                    let i = self.below(len) as usize;
                    let n = (self.below(32) as usize).min(bytes.len() - i);
                    bytes.drain(i..i + n);
                }
                4 if len > 0 => {
                    let i = self.below(len) as usize;
                    let n = (self.below(64) as usize).min(bytes.len() - i);
                    let copy = bytes[i..i + n].to_vec();
                    let at = self.below(len + 1) as usize;
                    bytes.splice(at..at, copy);
                }
                _ if !other.is_empty() => {
                    let cut = self.below(bytes.len() as u64 + 1) as usize;
                    let from = self.below(other.len() as u64) as usize;
                    bytes.truncate(cut);
                    bytes.extend_from_slice(&other[from..]);
                }
                _ => {}
            }
        }
        bytes.truncate(16 * 1024);
        bytes
    }
}
