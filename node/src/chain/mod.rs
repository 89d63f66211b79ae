//! The chain side of the node: providers, the head follower and the
//! anchoring manager.

pub mod anchor;
pub mod heads;

use alloy::network::EthereumWallet;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::{reqwest, Http};
use anyhow::{bail, Context};
use insight_anchor::InsightAnchor;
use std::time::Duration;
use tracing::info;

use crate::config::{ChainConfig, ANVIL_CHAIN_ID};

/// Anvil's first development account key. It is public knowledge and funds
/// only local test chains: the node uses it on chain id 31337 alone, and
/// only when no key is given in `ANALYTICS_ANCHOR_KEY`.
pub const ANVIL_DEV_KEY: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// Environment variable holding the anchoring account's private key.
pub const ANCHOR_KEY_ENV: &str = "ANALYTICS_ANCHOR_KEY";

/// Longest wait for one chain RPC request.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP RPC client whose requests give up after [`RPC_TIMEOUT`], so an
/// endpoint that accepts connections but never answers cannot hang us.
fn http_client(url: &str) -> anyhow::Result<RpcClient> {
    let url = url.parse().with_context(|| format!("invalid RPC URL {url:?}"))?;
    let http = reqwest::Client::builder()
        .timeout(RPC_TIMEOUT)
        .connect_timeout(RPC_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let local = alloy::transports::utils::guess_local_url(&url);
    Ok(RpcClient::new(Http::with_client(http, url), local))
}

/// A read-only provider over HTTP.
pub fn read_provider(url: &str) -> anyhow::Result<DynProvider> {
    Ok(ProviderBuilder::new().connect_client(http_client(url)?).erased())
}

/// The anchoring account: a provider that signs with its key, the key's
/// wallet for signing transactions the node builds itself, and its address.
pub struct AnchorSigner {
    /// A provider that fills and signs what it sends.
    pub provider: DynProvider,
    /// The wallet holding the key.
    pub wallet: EthereumWallet,
    /// The account's address.
    pub address: Address,
}

/// The anchoring account.
///
/// The key comes from [`ANCHOR_KEY_ENV`]; without it, a local anvil chain
/// falls back to [`ANVIL_DEV_KEY`] and any other chain is refused.
pub async fn signing_provider(config: &ChainConfig) -> anyhow::Result<AnchorSigner> {
    let chain_id = read_provider(&config.rpc_url)?
        .get_chain_id()
        .await
        .with_context(|| format!("cannot reach the chain at {}", config.rpc_url))?;
    check_chain_id(config, chain_id)?;

    let key = match std::env::var(ANCHOR_KEY_ENV) {
        Ok(key) if !key.trim().is_empty() => key,
        _ if chain_id == ANVIL_CHAIN_ID => ANVIL_DEV_KEY.to_owned(),
        _ => bail!("{ANCHOR_KEY_ENV} must hold the anchoring key on chain id {chain_id}"),
    };
    let signer: PrivateKeySigner = key
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{ANCHOR_KEY_ENV} is not a private key"))?;
    let address = signer.address();
    let wallet = EthereumWallet::from(signer);
    let provider = ProviderBuilder::new()
        .wallet(wallet.clone())
        .connect_client(http_client(&config.rpc_url)?)
        .erased();
    Ok(AnchorSigner { provider, wallet, address })
}

/// Fails when the chain is not the configured one.
pub fn check_chain_id(config: &ChainConfig, actual: u64) -> anyhow::Result<()> {
    match config.chain_id {
        Some(expected) if expected != actual => {
            bail!("config field `chain.chain_id`: expected {expected}, the RPC reports {actual}")
        }
        _ => Ok(()),
    }
}

/// Deploys a new `InsightAnchor` and returns its address.
pub async fn deploy(provider: &DynProvider) -> anyhow::Result<Address> {
    let contract = InsightAnchor::deploy(provider.clone())
        .await
        .context("deploying InsightAnchor")?;
    let address = *contract.address();
    info!(target: "chain", %address, "InsightAnchor deployed");
    Ok(address)
}

/// Fails unless contract code exists at `address`.
pub async fn ensure_contract(
    provider: &DynProvider,
    address: Address,
) -> anyhow::Result<()> {
    let code = provider.get_code_at(address).await.context("reading contract code")?;
    if code.is_empty() {
        bail!("config field `chain.contract`: no contract code at {address}");
    }
    Ok(())
}
