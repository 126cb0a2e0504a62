//! Google Cloud Pub/Sub, through Google's Rust client (`google-cloud-pubsub`): the `pubsub`
//! source ([`source`]), the sink's writer ([`sink`]), and what both share — the connection
//! (project and endpoint) and its credentials.
//!
//! **Credentials.** Against Google Cloud: Application Default Credentials (the
//! `GOOGLE_APPLICATION_CREDENTIALS` file, `gcloud auth application-default login`, or the
//! machine's service account), never the pipeline file. Against the emulator — an `http://`
//! endpoint, or `PUBSUB_EMULATOR_HOST` in the environment as Google's tools use it — no
//! credentials.
//!
//! ```
//! use weir_cloud::pubsub::Connection;
//! let c = Connection { project: "acme".into(), endpoint: Some("http://127.0.0.1:8085".into()) };
//! assert_eq!(c.path("topics", "sensors"), "projects/acme/topics/sensors");
//! assert_eq!(c.path("topics", "projects/other/topics/t"), "projects/other/topics/t");
//! assert!(c.emulator());
//! ```

use std::time::Duration;

use google_cloud_auth::credentials::Credentials;
use google_cloud_pubsub::client::{SubscriptionAdmin, TopicAdmin};

pub mod sink;
pub mod source;

/// How long Weir waits for the service before it gives up on a request made before the run.
pub const SERVICE_TIMEOUT: Duration = Duration::from_secs(15);

/// Where topics and subscriptions are: the project, and the service's endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The Google Cloud project.
    pub project: String,
    /// Another endpoint than Google's, such as the emulator's `http://127.0.0.1:8085`
    /// (`None`: `PUBSUB_EMULATOR_HOST` if set, else Google's).
    pub endpoint: Option<String>,
}

impl Connection {
    /// The endpoint requests go to, if not Google's.
    pub fn endpoint(&self) -> Option<String> {
        self.endpoint.clone().or_else(|| {
            std::env::var("PUBSUB_EMULATOR_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .map(|h| format!("http://{h}"))
        })
    }

    /// Whether requests go to an emulator (plain HTTP, no credentials).
    pub fn emulator(&self) -> bool {
        self.endpoint().is_some_and(|e| e.starts_with("http://"))
    }

    /// The full name of a `kind` ("topics", "subscriptions") named `name` (kept when already
    /// full).
    pub fn path(&self, kind: &str, name: &str) -> String {
        if name.starts_with("projects/") {
            name.to_string()
        } else {
            format!("projects/{}/{kind}/{name}", self.project)
        }
    }

    /// The credentials: none for an emulator, else Application Default Credentials.
    pub fn credentials(&self) -> Result<Credentials, String> {
        if self.emulator() {
            return Ok(google_cloud_auth::credentials::anonymous::Builder::new().build());
        }
        google_cloud_auth::credentials::Builder::default()
            .build()
            .map_err(|e| {
                format!(
                    "no Google Cloud credentials: {e} (set GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth application-default login`)"
                )
            })
    }

    /// Where the service is, for messages.
    pub fn place(&self) -> String {
        self.endpoint()
            .unwrap_or_else(|| "Google Cloud Pub/Sub".into())
    }

    /// A message for a failed request: what failed, the client's error, and what to do.
    pub fn failure(&self, what: &str, e: impl std::fmt::Display) -> String {
        let text = e.to_string();
        let hint = if text.contains("NotFound")
            || text.contains("not found")
            || text.contains("NOT_FOUND")
        {
            "create it (`weir produce --pubsub TOPIC --subscription NAME` creates both), or fix the name".to_string()
        } else if text.contains("connect")
            || text.contains("transport")
            || text.contains("Connection refused")
            || text.contains("dns")
        {
            format!(
                "cannot reach {}: start the service or the emulator, or fix `endpoint`",
                self.place()
            )
        } else {
            "see the service's message above".into()
        };
        format!("{what} failed: {text} ({hint})")
    }

    /// Checks that an emulator's endpoint accepts connections (the client would retry a
    /// refused connection until its deadline): `Err` saying so at once.
    pub fn probe(&self) -> Result<(), String> {
        let Some(e) = self.endpoint().filter(|_| self.emulator()) else {
            return Ok(());
        };
        let host = e
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        let addrs: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(host)
            .map(|a| a.collect())
            .unwrap_or_default();
        let reached = addrs
            .iter()
            .any(|a| std::net::TcpStream::connect_timeout(a, Duration::from_secs(3)).is_ok());
        if reached {
            Ok(())
        } else {
            Err(format!(
                "cannot reach {e}: start the service or the emulator (gcloud beta emulators pubsub start), or fix `endpoint`"
            ))
        }
    }

    /// A topic admin client.
    pub async fn topics(&self) -> Result<TopicAdmin, String> {
        let mut b = TopicAdmin::builder().with_credentials(self.credentials()?);
        if let Some(e) = self.endpoint() {
            b = b.with_endpoint(e);
        }
        b.build()
            .await
            .map_err(|e| format!("cannot make a Pub/Sub client: {e}"))
    }

    /// A subscription admin client.
    pub async fn subscriptions(&self) -> Result<SubscriptionAdmin, String> {
        let mut b = SubscriptionAdmin::builder().with_credentials(self.credentials()?);
        if let Some(e) = self.endpoint() {
            b = b.with_endpoint(e);
        }
        b.build()
            .await
            .map_err(|e| format!("cannot make a Pub/Sub client: {e}"))
    }

    /// Checks that topic `name` exists.
    pub async fn check_topic(&self, name: &str) -> Result<(), String> {
        self.probe()?;
        let path = self.path("topics", name);
        self.topics()
            .await?
            .get_topic()
            .set_topic(&path)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.failure(&format!("looking up topic `{path}`"), e))
    }

    /// Checks that subscription `name` exists; returns whether it delivers in order of
    /// ordering keys.
    pub async fn check_subscription(&self, name: &str) -> Result<bool, String> {
        self.probe()?;
        let path = self.path("subscriptions", name);
        self.subscriptions()
            .await?
            .get_subscription()
            .set_subscription(&path)
            .send()
            .await
            .map(|s| s.enable_message_ordering)
            .map_err(|e| self.failure(&format!("looking up subscription `{path}`"), e))
    }

    /// Creates topic `name` unless it exists; returns whether it created it.
    pub async fn create_topic(&self, name: &str) -> Result<bool, String> {
        let path = self.path("topics", name);
        match self
            .topics()
            .await?
            .create_topic()
            .set_name(&path)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.to_string().contains("AlreadyExists")
                    || e.to_string().contains("ALREADY_EXISTS")
                    || e.to_string().contains("already exists") =>
            {
                Ok(false)
            }
            Err(e) => Err(self.failure(&format!("creating topic `{path}`"), e)),
        }
    }

    /// Creates subscription `name` to `topic` unless it exists (delivering in order of ordering
    /// keys with `ordered`); returns whether it created it.
    pub async fn create_subscription(
        &self,
        name: &str,
        topic: &str,
        ordered: bool,
    ) -> Result<bool, String> {
        let path = self.path("subscriptions", name);
        match self
            .subscriptions()
            .await?
            .create_subscription()
            .set_name(&path)
            .set_topic(self.path("topics", topic))
            .set_enable_message_ordering(ordered)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.to_string().contains("AlreadyExists")
                    || e.to_string().contains("ALREADY_EXISTS")
                    || e.to_string().contains("already exists") =>
            {
                Ok(false)
            }
            Err(e) => Err(self.failure(&format!("creating subscription `{path}`"), e)),
        }
    }
}
