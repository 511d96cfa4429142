//! Counter-based random numbers for sampling: one draw per (request, position), computed from
//! the draw's coordinates alone.
//!
//! A stateful stream (one generator advanced token by token) ties a sample to the history of
//! its generator: recomputing a preempted sequence, resuming a killed run in the middle, or
//! drawing on another device must replay the stream from the start. Philox4x32-10 (Salmon et
//! al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the generator of cuRAND,
//! PyTorch and JAX) maps a 128-bit counter and a 64-bit key to 128 random bits with integer
//! operations only, so the CPU and a GPU kernel compute the same bits, and any draw can be
//! made on its own. The key comes from (seed, problem id, sample index) and the counter is the
//! position of the token being chosen.

use sha2::{Digest, Sha256};

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds: the 128 random bits of `counter` under `key`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// The key of one request's draws, derived from (seed, problem id, sample index).
///
/// Deriving it from the request rather than from the batch slot is what makes a sampled answer
/// independent of which other prompts shared its batch; drawing by position rather than from a
/// stream is what lets a sequence be recomputed or resumed at any token.
///
/// ```
/// use reprolm_engine::NoiseKey;
/// let k = NoiseKey::new(42, "aime-2024-1", 3);
/// assert_eq!(k.draw(100), NoiseKey::new(42, "aime-2024-1", 3).draw(100));
/// assert_ne!(k.draw(100), k.draw(101));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoiseKey([u32; 2]);

impl NoiseKey {
    /// The key of sample `sample_index` of problem `problem_id` under `seed`.
    pub fn new(seed: u64, problem_id: &str, sample_index: u32) -> Self {
        let mut h = Sha256::new();
        h.update(b"reprolm-sample-noise-v1");
        h.update(seed.to_le_bytes());
        h.update((problem_id.len() as u64).to_le_bytes());
        h.update(problem_id.as_bytes());
        h.update(sample_index.to_le_bytes());
        let d = h.finalize();
        NoiseKey([
            u32::from_le_bytes([d[0], d[1], d[2], d[3]]),
            u32::from_le_bytes([d[4], d[5], d[6], d[7]]),
        ])
    }

    /// The two 32-bit words a GPU kernel takes as the Philox key.
    pub fn words(self) -> [u32; 2] {
        self.0
    }

    /// 64 uniform random bits for the token at `position` of the sequence.
    pub fn draw(self, position: usize) -> u64 {
        let p = position as u64;
        let out = philox4x32_10([p as u32, (p >> 32) as u32, 0, 0], self.0);
        (u64::from(out[0]) << 32) | u64::from(out[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known-answer vectors of the Random123 distribution (`kat_vectors`, philox4x32 10).
    #[test]
    fn philox_matches_the_published_known_answers() {
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn draws_depend_on_every_part_of_the_key_and_the_position() {
        let base = NoiseKey::new(42, "p1", 0).draw(7);
        assert_eq!(base, NoiseKey::new(42, "p1", 0).draw(7));
        assert_ne!(base, NoiseKey::new(43, "p1", 0).draw(7));
        assert_ne!(base, NoiseKey::new(42, "p2", 0).draw(7));
        assert_ne!(base, NoiseKey::new(42, "p1", 1).draw(7));
        assert_ne!(base, NoiseKey::new(42, "p1", 0).draw(8));
        // "p1" + sample 0 and "p" + "1..." cannot collide: the id's length is hashed.
        assert_ne!(NoiseKey::new(1, "ab", 0), NoiseKey::new(1, "a", 0));
    }
}
