//! Federated learning: FedAvg (McMahan et al. 2017, "Communication-Efficient Learning of Deep
//! Networks from Decentralized Data") and FedProx (Li et al. 2020) over [`Client`]s that each
//! hold their own data, with secure aggregation and client-level differential privacy.
//!
//! Every round the server samples ⌈fraction · clients⌉ clients (seeded), sends them the global
//! weights; each trains locally (`local` config: epochs, batch size, optimizer) and returns its
//! update Δₖ = wₖ − w. The server adds Σ nₖΔₖ / Σ nₖ (nₖ: the client's examples). FedProx
//! pulls local weights toward the global ones: after each local step, w ← w − lr·μ·(w − w_global)
//! (exactly the proximal term's gradient step for SGD; for adaptive optimizers a decoupled
//! step, as AdamW decouples weight decay).
//!
//! Secure aggregation (pairwise additive masking, Bonawitz et al. 2017): every round each
//! sampled client makes a fresh X25519 key pair (RFC 7748) from the operating system's
//! randomness ([`SecAggKeys`]) and the server passes the public keys round. Each pair (i, j)
//! agrees on a key kᵢⱼ (SHA-256 of the X25519 shared secret, the round and the two ids), and
//! client i encodes nᵢΔᵢ in fixed point (2⁻²⁴) as 64-bit integers and adds, for every other
//! participant j, +ChaCha20(kᵢⱼ) if i < j and −ChaCha20(kᵢⱼ) otherwise, modulo 2⁶⁴. The masks
//! cancel in the sum, so the server learns Σ nₖΔₖ exactly (to the encoding's 6·10⁻⁸); what it
//! holds of one client (public keys and a masked update) is that update plus keystream of keys
//! only the pair can compute, so it reveals nothing about the update (to an adversary who cannot
//! break X25519 or ChaCha20). Nothing about the masks depends on the run's seed: the trained model
//! is still reproducible, because the masks cancel exactly.
//!
//! Dropouts: a client whose local training fails leaves the round (recorded in its
//! [`RoundRecord`], logged); the others' masks paired with it would not cancel, so each
//! survivor reveals its pair key with each dropped client and the server removes those masks
//! ([`unmask_sum_with_dropouts`]), as in Bonawitz et al.'s recovery step (they reveal shares of
//! the dropped client's secret key, which yield the same pair keys). This trusts the server
//! to report dropouts truthfully (honest-but-curious); their double masking, which protects an
//! update when the server lies about who dropped, is not implemented. A round where every
//! sampled client drops out is an error.
//!
//! Client-level DP (DP-FedAvg, McMahan et al. 2018): each update is clipped to L2 norm S and
//! the server adds Gaussian noise σ·S to the sum, then divides by the expected weight; with
//! client-level DP the clients are weighted equally, and the rounds are accounted as the
//! Poisson-subsampled Gaussian with q = fraction (clients sampled independently).
//!
//! Features must mean the same to every client: local training does not standardize (scale
//! features with public bounds, or share a standardizer fitted elsewhere).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Target};
use crate::error::{Error, Result};
use crate::metrics;
use crate::nn::Mlp;
use crate::privacy::{PrivacyAccountant, PrivacySpent, gaussian, poisson_batch};
use crate::rng::Rng;
use crate::trainer::{MlpModel, NdarrayTrainer, Observer, Silent, TrainConfig, Warm};

/// A participant: holds its data and trains on it.
///
/// # Contract
/// - `train` starts from `global` (never keeps state from earlier rounds unless it says so)
///   and returns parameters of the same architecture.
/// - `examples` is the size of the data it trains on (its weight in FedAvg); > 0.
pub trait Client: Send + Sync {
    /// A name for logs and errors.
    fn id(&self) -> &str;
    /// How many examples it holds.
    fn examples(&self) -> usize;
    /// Local training from the global parameters; returns the new parameters.
    fn train(&self, global: &Mlp, config: &TrainConfig, proximal_mu: f32) -> Result<Vec<f32>>;
}

/// A client holding a [`Dataset`] in memory, training with the ndarray backend.
#[derive(Debug, Clone)]
pub struct DatasetClient {
    id: String,
    data: Dataset,
}

impl DatasetClient {
    /// A client named `id` holding `data` (refused if empty).
    pub fn new(id: impl Into<String>, data: Dataset) -> Result<Self> {
        let id = id.into();
        if data.is_empty() {
            return Err(Error::invalid(
                format!("client {id}"),
                "has an empty shard: no examples to train on",
            ));
        }
        Ok(Self { id, data })
    }

    /// Its data.
    pub fn data(&self) -> &Dataset {
        &self.data
    }
}

impl Client for DatasetClient {
    fn id(&self) -> &str {
        &self.id
    }

    fn examples(&self) -> usize {
        self.data.len()
    }

    fn train(&self, global: &Mlp, config: &TrainConfig, proximal_mu: f32) -> Result<Vec<f32>> {
        let mut c = config.clone();
        c.standardize = false;
        c.local = Some(Warm {
            initial: global.parameters().to_vec(),
            proximal_mu,
            outputs: global.architecture().outputs,
            mask: None,
        });
        let (model, _) = NdarrayTrainer.fit_mlp(&self.data, None, &c, &mut Silent)?;
        Ok(model.network().parameters().to_vec())
    }
}

/// FedAvg or FedProx.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Algorithm {
    /// Federated averaging.
    FedAvg,
    /// FedAvg with a proximal term μ/2·‖w − w_global‖² in each client's objective.
    FedProx {
        /// μ.
        mu: f32,
    },
}

/// Client-level differential privacy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClientDp {
    /// S: the largest L2 norm of one client's update.
    pub clip_norm: f64,
    /// σ: noise standard deviation as a multiple of S.
    pub noise_multiplier: f64,
    /// δ.
    pub delta: f64,
}

impl ClientDp {
    /// Clip `clip_norm`, noise `noise_multiplier`, δ = 10⁻⁵.
    pub fn new(clip_norm: f64, noise_multiplier: f64) -> Self {
        Self {
            clip_norm,
            noise_multiplier,
            delta: 1e-5,
        }
    }
}

/// How to train federatedly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FederatedConfig {
    /// Rounds of communication.
    pub rounds: usize,
    /// The fraction C of clients that take part in a round, in (0, 1].
    pub fraction: f64,
    /// Each client's local training: epochs, batch size, optimizer, the architecture.
    pub local: TrainConfig,
    /// FedAvg or FedProx.
    pub algorithm: Algorithm,
    /// Pairwise-masked secure aggregation of the updates.
    pub secure_aggregation: bool,
    /// Client-level DP.
    pub client_dp: Option<ClientDp>,
    /// Stop once the validation accuracy reaches this (and report the round).
    pub target_accuracy: Option<f64>,
    /// Seed of the initial weights, client sampling and client-level DP noise (secure
    /// aggregation's masks come from the operating system's randomness, not from it).
    pub seed: u64,
}

impl Default for FederatedConfig {
    /// 50 rounds, every client every round, FedAvg with 5 local epochs of SGD (lr 0.1) on
    /// batches of 10 (McMahan et al.'s E = 5, B = 10), secure aggregation on.
    fn default() -> Self {
        let local = TrainConfig {
            epochs: 5,
            batch_size: 10,
            optimizer: crate::optim::OptimizerConfig::new(crate::optim::OptimizerKind::Sgd, 0.1),
            ..TrainConfig::default()
        };
        Self {
            rounds: 50,
            fraction: 1.0,
            local,
            algorithm: Algorithm::FedAvg,
            secure_aggregation: true,
            client_dp: None,
            target_accuracy: None,
            seed: 0,
        }
    }
}

/// One round's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RoundRecord {
    /// 1-based.
    pub round: usize,
    /// Clients whose updates were aggregated (sampled, less those that dropped out).
    pub clients: usize,
    /// Validation accuracy of the global model after the round (with validation data).
    pub accuracy: Option<f64>,
    /// L2 norm of the aggregated update.
    pub update_norm: f64,
    /// Sampled clients that dropped out (their training failed), with the reason.
    #[serde(default)]
    pub dropped: Vec<(String, String)>,
}

/// What federated training did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FederatedHistory {
    /// Per round.
    pub rounds: Vec<RoundRecord>,
    /// The first round whose validation accuracy reached the target.
    pub reached_target: Option<usize>,
    /// Client-level DP's ε, when on.
    pub privacy: Option<PrivacySpent>,
}

/// Fixed-point scale of secure aggregation's encoding.
const FIXED: f64 = (1u64 << 24) as f64;

/// One participant's key pair for a round of secure aggregation: X25519 (RFC 7748) with a secret
/// from the operating system's randomness. The secret is erased on drop and never printed
/// (`Debug` shows the public key).
pub struct SecAggKeys {
    secret: x25519_dalek::StaticSecret,
    public: x25519_dalek::PublicKey,
}

impl std::fmt::Debug for SecAggKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecAggKeys")
            .field("public", &hex::encode(self.public.as_bytes()))
            .finish_non_exhaustive()
    }
}

impl SecAggKeys {
    /// A fresh key pair.
    pub fn generate() -> Result<Self> {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut_slice()).map_err(|e| {
            Error::invalid(
                "secure aggregation",
                format!("no randomness for a key: {e}"),
            )
        })?;
        let secret = x25519_dalek::StaticSecret::from(*bytes);
        let public = x25519_dalek::PublicKey::from(&secret);
        Ok(Self { secret, public })
    }

    /// The public key, for the other participants.
    pub fn public(&self) -> [u8; 32] {
        *self.public.as_bytes()
    }

    /// The key client `me` shares with client `other` (public key `theirs`) in `round`: both
    /// compute the same one. A public key of low order (no shared secret) is refused.
    pub fn pair_key(
        &self,
        me: usize,
        other: usize,
        theirs: &[u8; 32],
        round: u64,
    ) -> Result<PairKey> {
        use sha2::Digest;
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(*theirs));
        if !shared.was_contributory() {
            return Err(Error::invalid(
                "secure aggregation",
                format!("client {other}'s public key gives no shared secret"),
            ));
        }
        let (lo, hi) = (me.min(other) as u64, me.max(other) as u64);
        let mut h = sha2::Sha256::new();
        h.update(b"aistd secure aggregation v1");
        h.update(round.to_le_bytes());
        h.update(lo.to_le_bytes());
        h.update(hi.to_le_bytes());
        h.update(shared.as_bytes());
        Ok(PairKey(h.finalize().into()))
    }
}

/// A key two participants share for one round: it seeds their mask. What a survivor reveals
/// about a dropped peer. Erased on drop; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct PairKey([u8; 32]);

impl std::fmt::Debug for PairKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairKey(<redacted>)")
    }
}

/// The mask of `len` 64-bit words that `key` seeds: its ChaCha20 keystream (nonce 0).
/// Erased on drop, like the keys (a mask reveals the update it hides).
fn mask(key: &PairKey, len: usize) -> zeroize::Zeroizing<Vec<u64>> {
    use chacha20::cipher::{KeyIvInit, StreamCipher};
    let mut bytes = zeroize::Zeroizing::new(vec![0u8; len * 8]);
    chacha20::ChaCha20::new(&key.0.into(), &[0u8; 12].into()).apply_keystream(&mut bytes);
    zeroize::Zeroizing::new(
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_else(|_| unreachable!("8 bytes"))))
            .collect(),
    )
}

/// Client `me`'s update `values` encoded in fixed point and masked with the masks it shares with
/// every other participant of `round` (`publics`: id and public key, `me` included or not):
/// what the server receives.
pub fn masked_update(
    values: &[f32],
    me: usize,
    keys: &SecAggKeys,
    publics: &[(usize, [u8; 32])],
    round: u64,
) -> Result<Vec<u64>> {
    let mut out: Vec<u64> = values
        .iter()
        .map(|v| ((f64::from(*v) * FIXED).round() as i64) as u64)
        .collect();
    for (other, theirs) in publics {
        if *other == me {
            continue;
        }
        let m = mask(&keys.pair_key(me, *other, theirs, round)?, values.len());
        for (o, m) in out.iter_mut().zip(m.iter().copied()) {
            *o = if me < *other {
                o.wrapping_add(m)
            } else {
                o.wrapping_sub(m)
            };
        }
    }
    Ok(out)
}

/// Σ of the masked updates, modulo 2⁶⁴.
fn add_all<'a>(masked: impl IntoIterator<Item = &'a [u64]>, len: usize) -> Vec<u64> {
    let mut acc = vec![0u64; len];
    for m in masked {
        for (a, v) in acc.iter_mut().zip(m) {
            *a = a.wrapping_add(*v);
        }
    }
    acc
}

fn decode(acc: Vec<u64>) -> Vec<f32> {
    acc.into_iter()
        .map(|v| ((v as i64) as f64 / FIXED) as f32)
        .collect()
}

/// The sum of masked updates, decoded: the masks cancel.
pub fn unmask_sum(masked: &[Vec<u64>], len: usize) -> Vec<f32> {
    decode(add_all(masked.iter().map(Vec::as_slice), len))
}

/// The sum of the survivors' masked updates (`masked`: client id and what it sent) when some
/// of `participants` dropped out after the masks were set: the masks each survivor shared with
/// a dropped client are removed with the pair keys it revealed (`revealed`: survivor, dropped
/// client, key). Refused, naming the pair, when a survivor has not revealed a key the sum
/// needs.
pub fn unmask_sum_with_dropouts(
    masked: &[(usize, Vec<u64>)],
    participants: &[usize],
    revealed: &[(usize, usize, PairKey)],
    len: usize,
) -> Result<Vec<f32>> {
    let survivors: Vec<usize> = masked.iter().map(|(c, _)| *c).collect();
    let mut acc = add_all(masked.iter().map(|(_, m)| m.as_slice()), len);
    for &d in participants.iter().filter(|p| !survivors.contains(p)) {
        for &s in &survivors {
            let key = revealed
                .iter()
                .find(|(a, b, _)| (*a, *b) == (s, d))
                .map(|(_, _, key)| key)
                .ok_or_else(|| {
                    Error::invalid(
                        "secure aggregation",
                        format!(
                            "client {s} has not revealed its key with dropped client {d}: the \
                             sum cannot be unmasked"
                        ),
                    )
                })?;
            // Undo what s added for the pair: +mask if s < d, −mask otherwise.
            for (a, m) in acc.iter_mut().zip(mask(key, len).iter().copied()) {
                *a = if s < d {
                    a.wrapping_sub(m)
                } else {
                    a.wrapping_add(m)
                };
            }
        }
    }
    Ok(decode(acc))
}

/// A sampled client's answer: its update, or why it dropped out.
type Outcome = std::result::Result<Vec<f32>, String>;

fn l2(v: &[f32]) -> f64 {
    v.iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
}

/// Federated training over `clients`. `valid`, held by the server, is required: it defines the
/// classes and features (the architecture) and is evaluated after every round (`None` is
/// refused with a typed error). `accountant` turns client-level DP into ε. The observer's
/// `cancelled` is honoured between rounds.
pub fn train_federated(
    clients: &[&dyn Client],
    valid: Option<&Dataset>,
    config: &FederatedConfig,
    accountant: Option<&dyn PrivacyAccountant>,
    observer: &mut dyn Observer,
) -> Result<(MlpModel, FederatedHistory)> {
    validate(clients, config)?;
    // The architecture: the server's validation data's features and classes.
    let template = match valid {
        Some(v) => v.clone(),
        None => {
            return Err(Error::invalid(
                "federated training",
                "needs validation data held by the server: it defines the classes and features \
                 and measures each round",
            ));
        }
    };
    let Target::Classes { names, .. } = &template.y else {
        return Err(Error::invalid(
            "federated training",
            "supports classification (the validation data has values)",
        ));
    };
    let arch = crate::nn::Architecture::new(
        template.x.ncols(),
        config.local.hidden.clone(),
        if names.len() == 2 { 1 } else { names.len() },
        config.local.activation,
    );
    let mut global = Mlp::new(arch, config.seed)?;
    let root = Rng::new(config.seed);
    let n = clients.len();
    let mu = match config.algorithm {
        Algorithm::FedAvg => 0.0,
        Algorithm::FedProx { mu } => mu,
    };
    let mut history = FederatedHistory::default();
    let mut chosen = Vec::new();
    let mut steps = 0u64;
    for round in 0..config.rounds {
        if observer.cancelled() {
            return Err(Error::Cancelled(round + 1));
        }
        // Clients of this round: a seeded choice of ⌈C·n⌉ (Poisson sampling with DP).
        let mut r = root.fork(round as u64 + 1);
        match &config.client_dp {
            Some(_) => poisson_batch(&mut r, n, config.fraction, &mut chosen),
            None => {
                let k = ((config.fraction * n as f64).ceil() as usize).clamp(1, n);
                let mut all: Vec<usize> = (0..n).collect();
                r.shuffle(&mut all);
                chosen = all[..k].to_vec();
                chosen.sort_unstable();
            }
        }
        steps += 1;
        let mut local = config.local.clone();
        local.seed = config.seed ^ ((round as u64 + 1) << 20);
        // A client whose training fails drops out of the round (Ok(None), with the reason);
        // one that answers with the wrong number of parameters breaks the protocol (Err).
        let updates: Vec<Result<(usize, Outcome)>> = chosen
            .par_iter()
            .map(|&c| {
                let mut lc = local.clone();
                lc.seed ^= c as u64 + 1;
                let p = match clients[c].train(&global, &lc, mu) {
                    Ok(p) => p,
                    Err(e) => return Ok((c, Err(e.to_string()))),
                };
                if p.len() != global.parameters().len() {
                    return Err(Error::invalid(
                        format!("client {}", clients[c].id()),
                        format!(
                            "returned {} parameters, the model has {}",
                            p.len(),
                            global.parameters().len()
                        ),
                    ));
                }
                let delta: Vec<f32> = p
                    .iter()
                    .zip(global.parameters())
                    .map(|(a, b)| a - b)
                    .collect();
                Ok((c, Ok(delta)))
            })
            .collect();
        let mut weighted = Vec::with_capacity(updates.len());
        let mut dropped = Vec::new();
        let mut total_weight = 0.0f64;
        for u in updates {
            let (c, outcome) = u?;
            let mut delta = match outcome {
                Ok(d) => d,
                Err(reason) => {
                    tracing::warn!(round = round + 1, client = clients[c].id(), %reason, "client dropped out");
                    dropped.push((c, reason));
                    continue;
                }
            };
            let w = match &config.client_dp {
                Some(dp) => {
                    let norm = l2(&delta);
                    let f = (dp.clip_norm / (norm + 1e-12)).min(1.0) as f32;
                    delta.iter_mut().for_each(|v| *v *= f);
                    1.0
                }
                None => clients[c].examples() as f64,
            };
            delta.iter_mut().for_each(|v| *v *= w as f32);
            total_weight += w;
            weighted.push((c, delta));
        }
        if weighted.is_empty() {
            match dropped.first() {
                Some((c, reason)) => {
                    return Err(Error::invalid(
                        format!("federated round {}", round + 1),
                        format!(
                            "every sampled client dropped out (client {}: {reason})",
                            clients[*c].id()
                        ),
                    ));
                }
                // DP-FedAvg's Poisson sampling can pick nobody: the round still adds its noise
                // (to a zero sum), as the accountant counts it.
                None if config.client_dp.is_some() => {}
                None => {
                    return Err(Error::invalid(
                        format!("federated round {}", round + 1),
                        "no client was sampled",
                    ));
                }
            }
        }
        let len = global.parameters().len();
        let mut sum = if config.secure_aggregation {
            // Each sampled client's fresh key pair (made before training in the protocol; only
            // the public keys reach the server).
            let keys = chosen
                .iter()
                .map(|_| SecAggKeys::generate())
                .collect::<Result<Vec<_>>>()?;
            let publics: Vec<(usize, [u8; 32])> = chosen
                .iter()
                .zip(&keys)
                .map(|(c, k)| (*c, k.public()))
                .collect();
            let slot = |c: usize| {
                chosen.iter().position(|x| *x == c).ok_or_else(|| {
                    Error::invalid("secure aggregation", format!("client {c} was not sampled"))
                })
            };
            let key_of = |c: usize| slot(c).map(|k| &keys[k]);
            let r = round as u64;
            let masked = weighted
                .iter()
                .map(|(c, d)| Ok((*c, masked_update(d, *c, key_of(*c)?, &publics, r)?)))
                .collect::<Result<Vec<(usize, Vec<u64>)>>>()?;
            // Each survivor reveals its key with each dropped client.
            let mut revealed = Vec::new();
            for (s, _) in &weighted {
                for (d, _) in &dropped {
                    let theirs = &publics[slot(*d)?].1;
                    revealed.push((*s, *d, key_of(*s)?.pair_key(*s, *d, theirs, r)?));
                }
            }
            unmask_sum_with_dropouts(&masked, &chosen, &revealed, len)?
        } else {
            let mut s = vec![0.0f32; len];
            for (_, d) in &weighted {
                s.iter_mut().zip(d).for_each(|(a, b)| *a += b);
            }
            s
        };
        let denom = match &config.client_dp {
            Some(dp) => {
                let mut noise = root.fork(0xd9_0000 + round as u64);
                let sd = dp.noise_multiplier * dp.clip_norm;
                sum.iter_mut()
                    .for_each(|v| *v += (sd * gaussian(&mut noise)) as f32);
                // Divided by the expected number of clients, which does not depend on who
                // took part.
                config.fraction * n as f64
            }
            None => total_weight,
        };
        if denom > 0.0 {
            for (p, s) in global.parameters_mut().iter_mut().zip(&sum) {
                *p += (f64::from(*s) / denom) as f32;
            }
        }
        let update_norm = l2(&sum) / denom.max(1e-12);
        if global.parameters().iter().any(|v| !v.is_finite()) {
            return Err(Error::Diverged {
                epoch: round + 1,
                step: 0,
                loss: f32::NAN,
            });
        }
        let model = MlpModel::from_network(global.clone(), &template)?;
        let accuracy = {
            let pred = model.predict_labels(template.x.view())?;
            Some(metrics::accuracy(
                template.labels().unwrap_or_default(),
                &pred,
            )?)
        };
        let rec = RoundRecord {
            round: round + 1,
            clients: weighted.len(),
            accuracy,
            update_norm,
            dropped: dropped
                .iter()
                .map(|(c, r)| (clients[*c].id().to_string(), r.clone()))
                .collect(),
        };
        tracing::debug!(
            round = round + 1,
            clients = weighted.len(),
            ?accuracy,
            "federated round"
        );
        observer.on_epoch(&crate::EpochRecord {
            epoch: round + 1,
            train_loss: update_norm,
            valid_loss: None,
            valid_metric: accuracy,
            lr: config.local.optimizer.lr,
            seconds: 0.0,
            samples_per_second: 0.0,
        });
        history.rounds.push(rec);
        if let (Some(t), Some(a)) = (config.target_accuracy, accuracy)
            && a >= t
            && history.reached_target.is_none()
        {
            history.reached_target = Some(round + 1);
            break;
        }
    }
    if let Some(dp) = &config.client_dp {
        let epsilon = match accountant {
            Some(a) if dp.noise_multiplier > 0.0 => {
                Some(a.epsilon(config.fraction, dp.noise_multiplier, steps, dp.delta)?)
            }
            _ => None,
        };
        history.privacy = Some(PrivacySpent {
            epsilon,
            delta: dp.delta,
            noise_multiplier: dp.noise_multiplier,
            clip_norm: dp.clip_norm,
            sampling_rate: config.fraction,
            steps,
            accountant: accountant.map(|a| a.name().to_string()),
        });
    }
    Ok((MlpModel::from_network(global, &template)?, history))
}

fn validate(clients: &[&dyn Client], config: &FederatedConfig) -> Result<()> {
    if clients.is_empty() {
        return Err(Error::invalid(
            "federated training",
            "needs at least one client",
        ));
    }
    if let Some(c) = clients.iter().find(|c| c.examples() == 0) {
        return Err(Error::invalid(
            format!("client {}", c.id()),
            "has an empty shard: no examples to train on",
        ));
    }
    if config.rounds == 0 {
        return Err(Error::invalid("federated training", "rounds must be ≥ 1"));
    }
    if !(config.fraction > 0.0 && config.fraction <= 1.0) {
        return Err(Error::invalid(
            "federated training",
            format!("client fraction {} must be in (0, 1]", config.fraction),
        ));
    }
    if let Some(t) = config.target_accuracy
        && !(t > 0.0 && t <= 1.0)
    {
        return Err(Error::invalid(
            "federated training",
            format!("target accuracy {t} must be in (0, 1]"),
        ));
    }
    if let Algorithm::FedProx { mu } = config.algorithm
        && !(mu >= 0.0 && mu.is_finite())
    {
        return Err(Error::invalid(
            "FedProx",
            format!("μ = {mu} must be ≥ 0 and finite"),
        ));
    }
    if let Some(dp) = &config.client_dp
        && !(dp.clip_norm > 0.0
            && dp.clip_norm.is_finite()
            && dp.noise_multiplier >= 0.0
            && dp.noise_multiplier.is_finite()
            && dp.delta > 0.0
            && dp.delta < 1.0)
    {
        return Err(Error::invalid(
            "client-level differential privacy",
            format!(
                "clip {} must be positive, noise multiplier {} ≥ 0, δ {} in (0, 1)",
                dp.clip_norm, dp.noise_multiplier, dp.delta
            ),
        ));
    }
    config.local.validate()
}

/// `d` split among `clients` at random, equally (IID).
pub fn split_iid(d: &Dataset, clients: usize, seed: u64) -> Result<Vec<Dataset>> {
    if clients == 0 || clients > d.len() {
        return Err(Error::invalid(
            "federated split",
            format!("{clients} clients for {} examples", d.len()),
        ));
    }
    let mut idx: Vec<usize> = (0..d.len()).collect();
    Rng::new(seed).shuffle(&mut idx);
    Ok((0..clients)
        .map(|c| {
            let part: Vec<usize> = idx.iter().skip(c).step_by(clients).copied().collect();
            d.subset(&part)
        })
        .collect())
}

/// McMahan et al.'s pathological non-IID split: the examples sorted by label, cut into
/// `shards_per_client · clients` shards, each client given that many shards at random (so most
/// clients see only a couple of classes).
pub fn split_label_skew(
    d: &Dataset,
    clients: usize,
    shards_per_client: usize,
    seed: u64,
) -> Result<Vec<Dataset>> {
    let labels = d.labels().ok_or_else(|| {
        Error::invalid("federated split", "a label-skewed split needs class labels")
    })?;
    let shards = clients * shards_per_client;
    if clients == 0 || shards_per_client == 0 || shards > d.len() {
        return Err(Error::invalid(
            "federated split",
            format!(
                "{clients} clients × {shards_per_client} shards for {} examples",
                d.len()
            ),
        ));
    }
    let mut idx: Vec<usize> = (0..d.len()).collect();
    idx.sort_by_key(|i| (labels[*i], *i));
    let per = d.len() / shards;
    let mut order: Vec<usize> = (0..shards).collect();
    Rng::new(seed).shuffle(&mut order);
    Ok((0..clients)
        .map(|c| {
            let mut part = Vec::new();
            for s in &order[c * shards_per_client..(c + 1) * shards_per_client] {
                let end = if *s == shards - 1 {
                    d.len()
                } else {
                    (s + 1) * per
                };
                part.extend_from_slice(&idx[s * per..end]);
            }
            d.subset(&part)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fresh keys for `participants`, and their public keys.
    fn keys_for(participants: &[usize]) -> (Vec<SecAggKeys>, Vec<(usize, [u8; 32])>) {
        let keys: Vec<SecAggKeys> = participants
            .iter()
            .map(|_| SecAggKeys::generate().expect("keys"))
            .collect();
        let publics = participants
            .iter()
            .zip(&keys)
            .map(|(c, k)| (*c, k.public()))
            .collect();
        (keys, publics)
    }

    #[test]
    fn pairwise_masks_cancel_and_hide_each_update() {
        let updates: Vec<Vec<f32>> = (0..5)
            .map(|c| {
                (0..100)
                    .map(|i| ((c * 31 + i * 7) % 13) as f32 * 0.1 - 0.6)
                    .collect()
            })
            .collect();
        let participants = [0usize, 2, 3, 7, 9];
        let session = || {
            let (keys, publics) = keys_for(&participants);
            updates
                .iter()
                .zip(participants)
                .zip(&keys)
                .map(|((u, c), k)| masked_update(u, c, k, &publics, 3).expect("masked"))
                .collect::<Vec<Vec<u64>>>()
        };
        let masked = session();
        let sum = unmask_sum(&masked, 100);
        for (i, s) in sum.iter().enumerate() {
            let truth: f32 = updates.iter().map(|u| u[i]).sum();
            assert!((s - truth).abs() < 1e-6, "coordinate {i}: {s} vs {truth}");
        }
        // One masked update, decoded alone, is noise far from the update: the decoded values
        // are spread over ±2³⁹, the update within ±1.
        let alone = unmask_sum(&masked[..1], 100);
        let far = alone
            .iter()
            .zip(&updates[0])
            .filter(|(a, u)| (**a - **u).abs() > 1e3)
            .count();
        assert!(far >= 99, "only {far} of 100 coordinates hidden");
        // Without one participant's share the rest do not cancel either.
        let partial = unmask_sum(&masked[..4], 100);
        assert!(partial.iter().filter(|v| v.abs() > 1e3).count() >= 99);
        // The masks come from the clients' fresh keys, not from anything the server knows: the
        // same updates in another session are masked differently, and sum to the same.
        let again = session();
        assert!(masked.iter().zip(&again).all(|(a, b)| a != b));
        assert_eq!(unmask_sum(&again, 100), sum);
        // Both ends of a pair derive one key; other pairs and rounds get others.
        let (k, p) = keys_for(&[0, 1, 2]);
        let k01 = k[0].pair_key(0, 1, &p[1].1, 3).expect("key");
        assert_eq!(k01, k[1].pair_key(1, 0, &p[0].1, 3).expect("key"));
        assert_ne!(k01, k[0].pair_key(0, 2, &p[2].1, 3).expect("key"));
        assert_ne!(k01, k[0].pair_key(0, 1, &p[1].1, 4).expect("key"));
        // Secrets stay out of debug output; a low-order public key is refused.
        assert_eq!(format!("{k01:?}"), "PairKey(<redacted>)");
        assert!(format!("{:?}", k[0]).contains(&hex::encode(p[0].1)));
        let e = k[0].pair_key(0, 1, &[0u8; 32], 3).expect_err("low order");
        assert!(e.to_string().contains("client 1"), "{e}");
    }

    #[test]
    fn the_survivors_revealed_keys_remove_a_dropped_clients_masks() {
        let updates: Vec<Vec<f32>> = (0..4)
            .map(|c| {
                (0..50)
                    .map(|i| ((c * 5 + i) % 7) as f32 * 0.2 - 0.5)
                    .collect()
            })
            .collect();
        let participants = [1usize, 4, 6, 8];
        let (keys, publics) = keys_for(&participants);
        // 4 and 8 drop out after the masks were set: the server holds what 1 and 6 sent.
        let masked: Vec<(usize, Vec<u64>)> = [(0, 1), (2, 6)]
            .iter()
            .map(|&(k, c)| {
                let m = masked_update(&updates[k], c, &keys[k], &publics, 9).expect("masked");
                (c, m)
            })
            .collect();
        let reveal = |pairs: &[(usize, usize)]| -> Vec<(usize, usize, PairKey)> {
            let at = |c: usize| participants.iter().position(|p| *p == c).expect("in");
            pairs
                .iter()
                .map(|&(s, d)| {
                    let key = keys[at(s)].pair_key(s, d, &publics[at(d)].1, 9);
                    (s, d, key.expect("key"))
                })
                .collect()
        };
        let all = reveal(&[(1, 4), (1, 8), (6, 4), (6, 8)]);
        let sum = unmask_sum_with_dropouts(&masked, &participants, &all, 50).expect("sum");
        for (i, s) in sum.iter().enumerate() {
            let truth = updates[0][i] + updates[2][i];
            assert!((s - truth).abs() < 1e-6, "coordinate {i}: {s} vs {truth}");
        }
        // Without the recovery the dropped clients' masks stay in the sum.
        let raw: Vec<Vec<u64>> = masked.iter().map(|(_, m)| m.clone()).collect();
        assert!(
            unmask_sum(&raw, 50)
                .iter()
                .filter(|v| v.abs() > 1e3)
                .count()
                >= 49
        );
        // A key missing: refused, naming the pair.
        let e = unmask_sum_with_dropouts(&masked, &participants, &all[..3], 50)
            .expect_err("a key is missing");
        assert!(
            e.to_string().contains("client 6") && e.to_string().contains("client 8"),
            "{e}"
        );
    }

    #[test]
    fn splits_cover_the_data_once() {
        let d = crate::data::digits().expect("digits");
        let iid = split_iid(&d, 10, 1).expect("iid");
        assert_eq!(iid.iter().map(Dataset::len).sum::<usize>(), d.len());
        let skew = split_label_skew(&d, 10, 2, 1).expect("skew");
        assert_eq!(skew.iter().map(Dataset::len).sum::<usize>(), d.len());
        // Each client sees few classes (at most 2 shards, a shard spans at most 2 labels).
        for c in &skew {
            let mut seen: Vec<u32> = c.labels().expect("labels").to_vec();
            seen.sort_unstable();
            seen.dedup();
            assert!(seen.len() <= 4, "{seen:?}");
        }
        assert!(split_iid(&d, 0, 1).is_err());
        assert!(split_label_skew(&d, 10, 1000, 1).is_err());
    }
}
