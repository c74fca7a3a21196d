//! The one source of randomness: a xorshift64* generator, seeded per input from the campaign's
//! seed, the target and the input's number, so any input can be made again on its own
//! (`--replay` needs no state from the inputs before it).

/// xorshift64* (Vigna): small, fast and good enough to choose mutations.
#[derive(Clone, Debug)]
pub struct Rng(u64);

/// splitmix64's finalizer: spreads nearby seeds (iteration 1, 2, 3...) over the whole state.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// The generator of input `iteration` of `target` in the campaign `seed`.
    pub fn for_input(seed: u64, target: &str, iteration: u64) -> Rng {
        let name = target.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Rng::new(mix(seed ^ mix(name ^ mix(iteration))))
    }

    pub fn new(seed: u64) -> Rng {
        // xorshift's state must never be zero.
        Rng(mix(seed).max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True once in `n` times.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A size in `0..max`, most often small: each doubling of the size is as likely as the
    /// one before, so huge values come up without crowding out the rest.
    pub fn size(&mut self, max: usize) -> usize {
        let bits = usize::BITS - max.leading_zeros();
        let cap = 1usize << self.below(bits as usize + 1);
        self.below(cap.min(max).max(1))
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::for_input(1, "json", 7).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::for_input(1, "json", 7).next_u64(),
            Rng::for_input(1, "json", 8).next_u64()
        );
        assert_ne!(
            Rng::for_input(1, "json", 7).next_u64(),
            Rng::for_input(1, "args", 7).next_u64()
        );
    }

    #[test]
    fn sizes_stay_below_the_bound_and_reach_it() {
        let mut rng = Rng::new(3);
        let sizes: Vec<usize> = (0..10_000).map(|_| rng.size(1000)).collect();
        assert!(sizes.iter().all(|&s| s < 1000));
        assert!(sizes.iter().any(|&s| s > 500));
        assert!(sizes.iter().filter(|&&s| s < 8).count() > 2000);
    }
}
