//! Splitting one token list over several fleet processes (shards).
//!
//! Shard `I` of `N` owns the tokens whose position `g` (from 0, in the full
//! list) has `g % N == I`: every token belongs to exactly one shard, a shard's
//! share depends only on `I`, `N` and the list, so a restarted shard takes the
//! same tokens, and shares differ in size by at most one.
//!
//! Why modulo rather than contiguous ranges: appending tokens to the list
//! (more agents for the next run) leaves every existing token on its shard,
//! where ranges would move the boundaries of every shard; and the same rule
//! spreads agents over several servers evenly ([`spread`]), whatever the
//! number of shards.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The environment variable Kubernetes sets in each pod of an Indexed Job:
/// the pod's completion index, `0..completions`.
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";

/// Shard `index` of `count`: the tokens at positions `g` with
/// `g % count == index`. Displays and parses as `index/count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// Shard `index` of `count`; `Err` unless `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Self, Error> {
        if count == 0 || index >= count {
            return Err(Error::Config(format!(
                "shard {index}/{count}: the index must be below the count (from 0)"
            )));
        }
        Ok(Shard { index, count })
    }

    /// The one shard of an unsharded run (`0/1`): every token.
    pub fn whole() -> Self {
        Shard { index: 0, count: 1 }
    }

    /// Shard `$JOB_COMPLETION_INDEX` of `count` (a Kubernetes Indexed Job
    /// pod); `Ok(None)` when the variable is not set.
    pub fn from_env(count: usize) -> Result<Option<Self>, Error> {
        Self::from_index_var(std::env::var(JOB_COMPLETION_INDEX), count)
    }

    fn from_index_var(var: Result<String, std::env::VarError>, count: usize) -> Result<Option<Self>, Error> {
        match var {
            Ok(v) => {
                let index = v
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| Error::Config(format!("{JOB_COMPLETION_INDEX}={v:?}: not a shard index")))?;
                Shard::new(index, count).map(Some)
            }
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(e) => Err(Error::Config(format!("{JOB_COMPLETION_INDEX}: {e}"))),
        }
    }

    /// This shard's index, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The number of shards.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether the token at position `position` of the full list is this
    /// shard's.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }

    /// How many of `total` tokens are this shard's.
    pub fn len_of(&self, total: usize) -> usize {
        total / self.count + usize::from(total % self.count > self.index)
    }

    /// The position in the full list of this shard's `local`-th token.
    pub fn position(&self, local: usize) -> usize {
        local * self.count + self.index
    }

    /// This shard's items of `all`, in order.
    pub fn select<T: Clone>(&self, all: &[T]) -> Vec<T> {
        all.iter().skip(self.index).step_by(self.count).cloned().collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = Error;

    /// Parses `I/N` (e.g. `3/10`).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Config(format!("shard {s:?}: expected INDEX/COUNT, e.g. 3/10"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n)
    }
}

/// Which of `targets` items (servers, say) the token at `position` goes to:
/// `position % targets`, the same modulo rule as the shards, so target `j`
/// serves exactly the tokens of `Shard::new(j, targets)`. `None` when there
/// are no targets.
pub fn spread(position: usize, targets: usize) -> Option<usize> {
    (targets > 0).then(|| position % targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_is_in_exactly_one_shard_and_shares_differ_by_at_most_one() {
        for total in [0usize, 1, 7, 10, 101, 1000] {
            for count in [1usize, 2, 3, 4, 10, 16] {
                let all: Vec<usize> = (0..total).collect();
                let mut seen = vec![0u32; total];
                let mut sizes = Vec::new();
                for index in 0..count {
                    let shard = Shard::new(index, count).unwrap();
                    let mine = shard.select(&all);
                    assert_eq!(mine.len(), shard.len_of(total), "{shard} of {total}");
                    for (local, &g) in mine.iter().enumerate() {
                        assert!(shard.owns(g));
                        assert_eq!(shard.position(local), g);
                        seen[g] += 1;
                    }
                    sizes.push(mine.len());
                }
                assert!(seen.iter().all(|&n| n == 1), "total {total} count {count}: {seen:?}");
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{sizes:?}");
            }
        }
    }

    #[test]
    fn a_shard_keeps_its_tokens_when_the_list_grows() {
        let short: Vec<usize> = (0..100).collect();
        let long: Vec<usize> = (0..150).collect();
        let shard = Shard::new(3, 7).unwrap();
        let before = shard.select(&short);
        let after = shard.select(&long);
        assert_eq!(&after[..before.len()], &before[..]);
    }

    #[test]
    fn shard_parses_and_displays_as_index_over_count_and_rejects_bad_input() {
        let s: Shard = "3/10".parse().unwrap();
        assert_eq!((s.index(), s.count()), (3, 10));
        assert_eq!(s.to_string(), "3/10");
        for bad in ["", "3", "10/10", "3/0", "-1/4", "a/b", "1/2/3"] {
            assert!(matches!(bad.parse::<Shard>(), Err(Error::Config(_))), "{bad:?}");
        }
        assert_eq!(Shard::whole().to_string(), "0/1");
    }

    #[test]
    fn job_completion_index_names_the_shard_and_a_bad_one_is_an_error() {
        use std::env::VarError;
        let s = Shard::from_index_var(Ok("4".into()), 10).unwrap();
        assert_eq!(s, Some(Shard::new(4, 10).unwrap()));
        assert_eq!(Shard::from_index_var(Err(VarError::NotPresent), 10).unwrap(), None);
        for bad in ["10", "x", "-1", ""] {
            assert!(
                matches!(Shard::from_index_var(Ok(bad.into()), 10), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn spread_sends_a_targets_tokens_to_it_alone() {
        let targets = 7;
        for g in 0..1000 {
            let j = spread(g, targets).unwrap();
            assert!(Shard::new(j, targets).unwrap().owns(g));
        }
        assert_eq!(spread(5, 0), None);
    }
}
