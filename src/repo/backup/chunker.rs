//! Content-defined chunking compatible with restic's chunker (Rabin fingerprints over a
//! 64-byte window, with the repository's polynomial): same boundaries, so the same
//! blobs and the same deduplication as restic for the same data.
//!
//! Why not rustic_core's chunker: it feeds the rolling hash one byte at a time through a
//! `Vec::push`, and a Rabin hash is one long dependency chain (shift, table load, xor per
//! byte), so a single stream runs at the latency of that chain. The fingerprint of a
//! position depends only on the 64 bytes before it, so [`Cdc::first_candidate`] hashes
//! several independent stretches of the buffer in lock-step, letting the CPU overlap the
//! chains, and then picks the first boundary. It also avoids a copy per byte.

use std::io::{self, Read};

use rustic_cdc::{Polynom, Polynom64, Rabin64};

/// Rolling-hash window in bytes (restic's `windowSize`).
pub(crate) const WINDOW: usize = 64;

/// Chunking parameters and the precomputed Rabin tables for one polynomial.
#[derive(Clone)]
pub(crate) struct Cdc {
    out: Box<[u64; 256]>,
    modt: Box<[u64; 256]>,
    shift: u32,
    mask: u64,
    min: usize,
    max: usize,
}

impl std::fmt::Debug for Cdc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cdc")
            .field("min", &self.min)
            .field("max", &self.max)
            .field("mask", &self.mask)
            .finish_non_exhaustive()
    }
}

/// Why chunking parameters were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CdcParamError {
    /// The average size must be a power of two (the split mask is `avg - 1`).
    #[error("average chunk size {0} is not a power of two")]
    AvgNotPowerOfTwo(usize),
    /// Sizes must satisfy `64 <= min <= avg <= max`.
    #[error("chunk sizes must satisfy 64 <= min ({min}) <= avg ({avg}) <= max ({max})")]
    Order { min: usize, avg: usize, max: usize },
    /// The polynomial must have degree 53 like restic's (the tables assume it fits).
    #[error("chunker polynomial {0:#x} has an unsupported degree")]
    Polynomial(u64),
}

impl Cdc {
    /// Tables for polynomial `poly` and sizes `min <= avg <= max` (restic: 512 KiB,
    /// 1 MiB, 8 MiB).
    ///
    /// # Errors
    /// If the sizes are inconsistent or the polynomial's degree is not in 9..=63.
    pub(crate) fn new(
        poly: u64,
        min: usize,
        avg: usize,
        max: usize,
    ) -> Result<Self, CdcParamError> {
        if !avg.is_power_of_two() {
            return Err(CdcParamError::AvgNotPowerOfTwo(avg));
        }
        if min < WINDOW || min > avg || avg > max {
            return Err(CdcParamError::Order { min, avg, max });
        }
        let p: Polynom64 = poly;
        let deg = p.degree();
        if !(9..=63).contains(&deg) {
            return Err(CdcParamError::Polynomial(poly));
        }
        Ok(Self {
            out: Box::new(Rabin64::calculate_out_table(WINDOW, &p)),
            modt: Box::new(Rabin64::calculate_mod_table(&p)),
            shift: u32::try_from(deg - 8).unwrap_or(0),
            mask: (avg as u64) - 1,
            min,
            max,
        })
    }

    /// Restic's defaults (512 KiB / 1 MiB / 8 MiB) for polynomial `poly`.
    ///
    /// # Errors
    /// If the polynomial's degree is unsupported.
    #[cfg(test)]
    pub(crate) fn restic(poly: u64) -> Result<Self, CdcParamError> {
        Self::new(poly, 512 << 10, 1 << 20, 8 << 20)
    }

    /// Fingerprint of `win` (exactly [`WINDOW`] bytes), the value restic's rolling hash
    /// holds once those bytes are the last 64 it has seen.
    #[inline]
    fn warm(&self, win: &[u8]) -> u64 {
        let mut d = 0u64;
        for &b in win {
            d = ((d << 8) | u64::from(b)) ^ self.modt[(d >> self.shift) as usize & 0xff];
        }
        d
    }

    /// Smallest `len` in `from..to` such that the fingerprint of `data[len-64..len]`
    /// has the low bits of the split mask all zero, i.e. the first candidate cut.
    /// Requires `from >= 64` and `to <= data.len() + 1`.
    #[must_use]
    pub(crate) fn first_candidate(&self, data: &[u8], from: usize, to: usize) -> Option<usize> {
        debug_assert!(from >= WINDOW && to <= data.len() + 1);
        // lanes of this many positions each are hashed in lock-step
        const LANE: usize = 16 << 10;
        const LANES: usize = 4;
        let mut start = from;
        while to.saturating_sub(start) >= LANE * LANES {
            if let Some(p) = self.scan4(data, start, LANE) {
                return Some(p);
            }
            start += LANE * LANES;
        }
        if start < to {
            return self.scan1(data, start, to);
        }
        None
    }

    /// One stream: candidates in `from..to`.
    fn scan1(&self, data: &[u8], from: usize, to: usize) -> Option<usize> {
        let (out, modt, shift, mask) = (&*self.out, &*self.modt, self.shift, self.mask);
        let mut d = self.warm(&data[from - WINDOW..from]);
        if d & mask == 0 {
            return Some(from);
        }
        for len in from + 1..to {
            d ^= out[data[len - 1 - WINDOW] as usize];
            d = ((d << 8) | u64::from(data[len - 1])) ^ modt[(d >> shift) as usize & 0xff];
            if d & mask == 0 {
                return Some(len);
            }
        }
        None
    }

    /// Four streams over `[s, s+4*lane)`, each covering `lane` consecutive positions;
    /// returns the first candidate overall.
    #[allow(clippy::similar_names)]
    fn scan4(&self, data: &[u8], s: usize, lane: usize) -> Option<usize> {
        let (out, modt, shift, mask) = (&*self.out, &*self.modt, self.shift, self.mask);
        let starts = [s, s + lane, s + 2 * lane, s + 3 * lane];
        let mut d = starts.map(|p| self.warm(&data[p - WINDOW..p]));
        let mut hit = [usize::MAX; 4];
        for (k, dk) in d.iter().enumerate() {
            if dk & mask == 0 {
                hit[k] = starts[k];
            }
        }
        // the slices make the bounds checks happen once, outside the loop
        let seg = |k: usize| &data[starts[k] - WINDOW..starts[k] + lane - 1];
        let (s0, s1, s2, s3) = (seg(0), seg(1), seg(2), seg(3));
        for i in 0..lane - 1 {
            // byte entering is at offset WINDOW+i of each segment, byte leaving at i
            macro_rules! step {
                ($k:expr, $seg:expr) => {{
                    let mut x = d[$k] ^ out[$seg[i] as usize];
                    x = ((x << 8) | u64::from($seg[i + WINDOW]))
                        ^ modt[(x >> shift) as usize & 0xff];
                    d[$k] = x;
                    if x & mask == 0 && hit[$k] == usize::MAX {
                        hit[$k] = starts[$k] + i + 1;
                    }
                }};
            }
            step!(0, s0);
            step!(1, s1);
            step!(2, s2);
            step!(3, s3);
        }
        hit.into_iter().find(|&h| h != usize::MAX)
    }
}

/// Splits a reader into chunks through a caller-owned read buffer (reused across
/// files: allocating and zeroing ~9 MiB per file showed up as a quarter of all backup
/// CPU in the profile); each chunk is returned as its own exactly-sized allocation so
/// it can travel down the pipeline alone.
pub(crate) struct ChunkReader<'a, R> {
    cdc: &'a Cdc,
    reader: R,
    buf: &'a mut Vec<u8>,
    start: usize,
    end: usize,
    /// Positions before this (relative to `start`) are known not to be cut candidates.
    scanned: usize,
    eof: bool,
}

/// How much is read from the source per `read` call.
const READ_SIZE: usize = 256 << 10;

impl<'a, R: Read> ChunkReader<'a, R> {
    /// Chunks `reader` with `cdc`, reading through `buf` (any contents are discarded;
    /// it grows to `max_size + 1 MiB` once and can be reused for the next file).
    pub(crate) fn new(cdc: &'a Cdc, reader: R, buf: &'a mut Vec<u8>) -> Self {
        Self {
            cdc,
            reader,
            buf,
            start: 0,
            end: 0,
            scanned: 0,
            eof: false,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.buf.len() < self.cdc.max + READ_SIZE {
            self.buf.resize(self.cdc.max + READ_SIZE, 0);
        }
        if self.end + READ_SIZE > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let want = (self.buf.len() - self.end).min(READ_SIZE);
        loop {
            match self.reader.read(&mut self.buf[self.end..self.end + want]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next chunk (borrowed from the read buffer until the next call), `None` at
    /// the end of the input.
    ///
    /// # Errors
    /// Read errors of the underlying reader.
    pub(crate) fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        let (min, max) = (self.cdc.min, self.cdc.max);
        loop {
            let avail = self.end - self.start;
            if avail == 0 && self.eof {
                return Ok(None);
            }
            // candidate lengths are min..max; one equal to `avail` is decidable now
            let data = &self.buf[self.start..self.end];
            let lo = self.scanned.max(min);
            let hi = (avail + 1).min(max);
            let mut cut = None;
            if lo < hi {
                cut = self.cdc.first_candidate(data, lo, hi);
                self.scanned = hi;
            }
            if cut.is_none() && avail >= max {
                cut = Some(max);
            }
            if cut.is_none() && self.eof {
                cut = Some(avail);
            }
            match cut {
                Some(len) => {
                    let from = self.start;
                    self.start += len;
                    self.scanned = 0;
                    return Ok(Some(&self.buf[from..from + len]));
                }
                None => self.fill()?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The polynomial of restic's chunker tests.
    const POLY: u64 = 0x003D_A335_8B4D_C173;

    /// A transliteration of restic's `Chunker.Next` (one byte at a time, with `pre`
    /// skipping and the reset that slides in a 1 byte), used as the reference.
    fn restic_reference(data: &[u8], poly: u64, min: usize, avg: usize, max: usize) -> Vec<usize> {
        let p: Polynom64 = poly;
        let out = Rabin64::calculate_out_table(WINDOW, &p);
        let modt = Rabin64::calculate_mod_table(&p);
        let shift = (p.degree() - 8) as u32;
        let mask = avg as u64 - 1;
        let mut lens = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            // reset
            let mut win = [0u8; WINDOW];
            let mut wpos = 0;
            let mut digest = 0u64;
            let slide = |digest: &mut u64, win: &mut [u8; WINDOW], wpos: &mut usize, b: u8| {
                let o = win[*wpos];
                win[*wpos] = b;
                *digest ^= out[o as usize];
                *wpos = (*wpos + 1) % WINDOW;
                let idx = (*digest >> shift) as usize & 0xff;
                *digest = ((*digest << 8) | u64::from(b)) ^ modt[idx];
            };
            slide(&mut digest, &mut win, &mut wpos, 1);
            let pre = min - WINDOW;
            let mut add = pre;
            let mut i = pos + pre;
            let mut cut = None;
            while i < data.len() {
                slide(&mut digest, &mut win, &mut wpos, data[i]);
                add += 1;
                i += 1;
                if add < min {
                    continue;
                }
                if digest & mask == 0 || add >= max {
                    cut = Some(add);
                    break;
                }
            }
            let len = cut.unwrap_or(data.len() - pos);
            lens.push(len);
            pos += len;
        }
        lens
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn chunk_all(cdc: &Cdc, data: &[u8], read_size: usize) -> Vec<usize> {
        struct Slow<'a>(&'a [u8], usize);
        impl Read for Slow<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.1).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut buf = Vec::new();
        let mut r = ChunkReader::new(cdc, Slow(data, read_size), &mut buf);
        let mut lens = Vec::new();
        let mut joined = Vec::new();
        while let Some(c) = r.next_chunk().unwrap() {
            lens.push(c.len());
            joined.extend_from_slice(c);
        }
        assert_eq!(joined, data, "chunks must reassemble the input");
        lens
    }

    #[test]
    fn small_params_match_restic_reference() {
        // small sizes give many boundaries per MiB, exercising every code path
        let (min, avg, max) = (256, 1024, 4096);
        let cdc = Cdc::new(POLY, min, avg, max).unwrap();
        for seed in 1..6u64 {
            let data = pseudo_random(3 << 20, seed);
            let want = restic_reference(&data, POLY, min, avg, max);
            assert!(want.len() > 1000);
            assert_eq!(chunk_all(&cdc, &data, 1 << 20), want, "seed {seed}");
            assert_eq!(chunk_all(&cdc, &data, 7777), want, "seed {seed}, odd reads");
        }
    }

    #[test]
    fn restic_sizes_match_reference() {
        let cdc = Cdc::restic(POLY).unwrap();
        let data = pseudo_random(40 << 20, 42);
        let want = restic_reference(&data, POLY, 512 << 10, 1 << 20, 8 << 20);
        assert!(want.len() > 10);
        assert_eq!(chunk_all(&cdc, &data, 1 << 20), want);
    }

    #[test]
    fn constant_data_cuts_at_min_or_max() {
        let cdc = Cdc::restic(POLY).unwrap();
        // 64 zero bytes fingerprint to 0, a cut candidate: restic cuts at the minimum
        let zeros = vec![0u8; 3 << 20];
        let want = restic_reference(&zeros, POLY, 512 << 10, 1 << 20, 8 << 20);
        assert_eq!(chunk_all(&cdc, &zeros, 1 << 20), want);
        assert_eq!(want, vec![512 << 10; 6]);
        // a byte whose window is no candidate never cuts: maximum-size chunks
        let b = (1..=255u8)
            .find(|&b| cdc.first_candidate(&[b; 65], 64, 65).is_none())
            .unwrap();
        let flat = vec![b; 20 << 20];
        let want = restic_reference(&flat, POLY, 512 << 10, 1 << 20, 8 << 20);
        assert_eq!(chunk_all(&cdc, &flat, 1 << 20), want);
        assert_eq!(want, vec![8 << 20, 8 << 20, 4 << 20]);
    }

    #[test]
    fn empty_and_tiny_inputs() {
        let cdc = Cdc::restic(POLY).unwrap();
        assert!(chunk_all(&cdc, &[], 1 << 20).is_empty());
        assert_eq!(chunk_all(&cdc, b"hello", 1 << 20), vec![5]);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            Cdc::new(POLY, 512, 1000, 4096).unwrap_err(),
            CdcParamError::AvgNotPowerOfTwo(1000)
        );
        assert!(matches!(
            Cdc::new(POLY, 8, 1024, 4096),
            Err(CdcParamError::Order { .. })
        ));
        assert!(matches!(
            Cdc::new(1, 512, 1024, 4096),
            Err(CdcParamError::Polynomial(1))
        ));
    }
}
