//! Resource vectors: CPU millicores, memory, GPUs (in thousandths, so fractions pack), and custom
//! resources.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An amount of each resource. GPUs are counted in thousandths (`gpu_milli = 1000` is one whole
/// GPU), as Alibaba's traces and fractional-GPU schedulers do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub cpu_milli: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// GPUs in thousandths.
    pub gpu_milli: u64,
    /// Anything else (licences, NICs, …), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, u64>,
}

impl Resources {
    /// Nothing.
    pub fn zero() -> Self {
        Self::default()
    }

    /// `cpu` cores, `memory_mib` MiB and `gpus` whole GPUs.
    pub fn new(cpu: u64, memory_mib: u64, gpus: u64) -> Self {
        Self {
            cpu_milli: cpu * 1000,
            memory_mib,
            gpu_milli: gpus * 1000,
            custom: BTreeMap::new(),
        }
    }

    /// With a custom resource.
    pub fn with(mut self, name: &str, amount: u64) -> Self {
        self.custom.insert(name.to_string(), amount);
        self
    }

    /// Parses `cpu=2,mem=4096,gpu=0.5,licence=1`: `cpu` in cores (fractions allowed), `mem` in
    /// MiB, `gpu` in GPUs (fractions allowed); any other name is a custom resource.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut r = Self::zero();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                Error::invalid(
                    format!("resources `{spec}`"),
                    format!("`{part}` is not NAME=AMOUNT"),
                )
            })?;
            let num: f64 = v.trim().parse().map_err(|_| {
                Error::invalid(
                    format!("resources `{spec}`"),
                    format!("`{v}` is not a number"),
                )
            })?;
            if !(num.is_finite() && num >= 0.0) {
                return Err(Error::invalid(
                    format!("resources `{spec}`"),
                    format!("`{k}` must be a finite amount ≥ 0"),
                ));
            }
            match k.trim() {
                "cpu" => r.cpu_milli = (num * 1000.0).round() as u64,
                "mem" | "memory" | "memory_mib" => r.memory_mib = num.round() as u64,
                "gpu" | "gpus" => r.gpu_milli = (num * 1000.0).round() as u64,
                other => {
                    r.custom.insert(other.to_string(), num.round() as u64);
                }
            }
        }
        Ok(r)
    }

    /// Whether `self` fits within `available`.
    pub fn fits_in(&self, available: &Resources) -> bool {
        self.cpu_milli <= available.cpu_milli
            && self.memory_mib <= available.memory_mib
            && self.gpu_milli <= available.gpu_milli
            && self
                .custom
                .iter()
                .all(|(k, v)| *v <= available.custom.get(k).copied().unwrap_or(0))
    }

    /// `self + other`.
    pub fn plus(&self, other: &Resources) -> Resources {
        let mut r = Resources {
            cpu_milli: self.cpu_milli + other.cpu_milli,
            memory_mib: self.memory_mib + other.memory_mib,
            gpu_milli: self.gpu_milli + other.gpu_milli,
            custom: self.custom.clone(),
        };
        for (k, v) in &other.custom {
            *r.custom.entry(k.clone()).or_default() += v;
        }
        r
    }

    /// `self − other`, or `None` if any amount would go below zero.
    pub fn minus(&self, other: &Resources) -> Option<Resources> {
        let mut r = Resources {
            cpu_milli: self.cpu_milli.checked_sub(other.cpu_milli)?,
            memory_mib: self.memory_mib.checked_sub(other.memory_mib)?,
            gpu_milli: self.gpu_milli.checked_sub(other.gpu_milli)?,
            custom: self.custom.clone(),
        };
        for (k, v) in &other.custom {
            let have = r.custom.get(k).copied().unwrap_or(0);
            r.custom.insert(k.clone(), have.checked_sub(*v)?);
        }
        Some(r)
    }

    /// `self × n`.
    pub fn times(&self, n: u64) -> Resources {
        Resources {
            cpu_milli: self.cpu_milli * n,
            memory_mib: self.memory_mib * n,
            gpu_milli: self.gpu_milli * n,
            custom: self
                .custom
                .iter()
                .map(|(k, v)| (k.clone(), v * n))
                .collect(),
        }
    }

    /// The amounts as (name, amount) pairs, zeros included for the three built-in resources.
    pub fn dimensions(&self) -> Vec<(&str, u64)> {
        let mut d = vec![
            ("cpu_milli", self.cpu_milli),
            ("memory_mib", self.memory_mib),
            ("gpu_milli", self.gpu_milli),
        ];
        d.extend(self.custom.iter().map(|(k, v)| (k.as_str(), *v)));
        d
    }

    /// The largest share of `total` that `self` takes in any resource (DRF's dominant share);
    /// resources `total` does not have count as 0.
    pub fn dominant_share(&self, total: &Resources) -> f64 {
        let share = |a: u64, t: u64| if t == 0 { 0.0 } else { a as f64 / t as f64 };
        let mut s = share(self.cpu_milli, total.cpu_milli)
            .max(share(self.memory_mib, total.memory_mib))
            .max(share(self.gpu_milli, total.gpu_milli));
        for (k, v) in &self.custom {
            s = s.max(share(*v, total.custom.get(k).copied().unwrap_or(0)));
        }
        s
    }

    /// Whether every amount is zero.
    pub fn is_zero(&self) -> bool {
        self.cpu_milli == 0
            && self.memory_mib == 0
            && self.gpu_milli == 0
            && self.custom.values().all(|v| *v == 0)
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu={},mem={},gpu={}",
            self.cpu_milli as f64 / 1000.0,
            self.memory_mib,
            self.gpu_milli as f64 / 1000.0
        )?;
        for (k, v) in &self.custom {
            write!(f, ",{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_arithmetic_and_shares() {
        let r = Resources::parse("cpu=1.5,mem=4096,gpu=0.25,ib=1").expect("parse");
        assert_eq!((r.cpu_milli, r.memory_mib, r.gpu_milli), (1500, 4096, 250));
        assert_eq!(r.custom["ib"], 1);
        assert_eq!(r.to_string(), "cpu=1.5,mem=4096,gpu=0.25,ib=1");
        let cap = Resources::new(8, 32768, 4).with("ib", 2);
        assert!(r.fits_in(&cap));
        assert!(!r.times(3).fits_in(&cap));
        assert_eq!(cap.minus(&r).expect("fits").plus(&r), cap);
        assert!(r.minus(&cap).is_none());
        assert_eq!(r.dominant_share(&cap), 0.5);
        for bad in ["cpu", "cpu=x", "gpu=-1", "mem=inf"] {
            assert!(Resources::parse(bad).is_err(), "{bad}");
        }
    }
}
