//! One connection type over a single Redis server and a Redis Cluster, so every command of
//! the queue is written once.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// How the queue reaches Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisMode {
    /// One server (or a primary behind a proxy or Sentinel-managed address).
    #[default]
    Standalone,
    /// A Redis Cluster: the URL lists one or more seed nodes, separated by commas; commands
    /// are routed by hash slot and follow `MOVED`/`ASK` redirections.
    Cluster,
}

impl std::str::FromStr for RedisMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "standalone" => Ok(Self::Standalone),
            "cluster" => Ok(Self::Cluster),
            other => Err(format!(
                "unknown Redis mode {other:?}: expected `standalone` or `cluster`"
            )),
        }
    }
}

/// Opens connections of either kind.
#[derive(Clone)]
pub(crate) enum Connector {
    Standalone(Client),
    Cluster(Vec<redis::ConnectionInfo>, Option<Vec<u8>>),
}

impl Connector {
    /// Parses `url` for `mode`: one URL, or comma-separated seed URLs for a cluster.
    /// `rediss://` URLs are reached over TLS, the server's certificate checked against the
    /// public roots, or against `root_ca` (PEM) when given.
    pub(crate) fn new(mode: RedisMode, url: &str, root_ca: Option<&[u8]>) -> RedisResult<Self> {
        let certificates = || redis::TlsCertificates {
            client_tls: None,
            root_cert: root_ca.map(<[u8]>::to_vec),
        };
        match mode {
            RedisMode::Standalone if root_ca.is_some() => {
                Client::build_with_tls(url, certificates()).map(Self::Standalone)
            }
            RedisMode::Standalone => Client::open(url).map(Self::Standalone),
            RedisMode::Cluster => url
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(redis::IntoConnectionInfo::into_connection_info)
                .collect::<RedisResult<Vec<_>>>()
                .and_then(|nodes| {
                    if nodes.is_empty() {
                        Err((
                            redis::ErrorKind::InvalidClientConfig,
                            "no cluster node given",
                        )
                            .into())
                    } else {
                        Ok(Self::Cluster(nodes, root_ca.map(<[u8]>::to_vec)))
                    }
                }),
        }
    }

    /// A connection whose replies may take up to `response_timeout`; it reconnects by
    /// itself after a server restart (and, on a cluster, follows slot changes).
    pub(crate) async fn open(&self, response_timeout: Duration) -> RedisResult<Conn> {
        const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
        match self {
            Self::Standalone(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(response_timeout)
                    .set_number_of_retries(2)
                    .set_max_delay(500);
                client
                    .get_connection_manager_with_config(config)
                    .await
                    .map(Conn::Standalone)
            }
            Self::Cluster(nodes, root_ca) => {
                let builder = ClusterClient::builder(nodes.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(response_timeout)
                    .retries(2)
                    .max_retry_wait(500);
                let builder = match root_ca {
                    Some(pem) => builder.certs(redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem.clone()),
                    }),
                    None => builder,
                };
                builder
                    .build()?
                    .get_async_connection()
                    .await
                    .map(|c| Conn::Cluster(Box::new(c)))
            }
        }
    }
}

/// A connection to a server or a cluster; cheap to clone (clones share it).
#[derive(Clone)]
pub(crate) enum Conn {
    Standalone(ConnectionManager),
    Cluster(Box<ClusterConnection>),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
