//! Where the archive lives: a local directory, or a bucket of an object store
//! (`s3://`, `gs://`, `az://`/`abfss://`), with credentials from the environment
//! (`AWS_*`, `GOOGLE_*`, `AZURE_*`; never from the command line).

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

use super::ArchiveError;

/// An opened archive location.
#[derive(Debug, Clone)]
pub struct Target {
    /// The store holding the archive.
    pub store: Arc<dyn ObjectStore>,
    /// The store's root URL (`file:///`, `s3://bucket`), as DataFusion registers stores.
    pub store_url: Url,
    /// The archive's folder inside the store (no leading or trailing `/`).
    pub prefix: Path,
    /// The location as given, for messages.
    pub display: String,
}

impl Target {
    /// Opens `location`: a directory path (created when missing) or a URL.
    pub fn open(location: &str) -> Result<Target, ArchiveError> {
        let bad = |reason: String| ArchiveError::Location { location: location.to_string(), reason };
        let url = match Url::parse(location) {
            Ok(u) if u.scheme().len() > 1 => Some(u),
            // A Windows drive letter, or not a URL at all: a path.
            _ => None,
        };
        let Some(url) = url.filter(|u| u.scheme() != "file") else {
            let path = match location.strip_prefix("file://") {
                Some(p) => std::path::PathBuf::from(p),
                None => std::path::PathBuf::from(location),
            };
            std::fs::create_dir_all(&path).map_err(|e| bad(format!("cannot create the directory: {e}")))?;
            let abs = std::fs::canonicalize(&path).map_err(|e| bad(format!("cannot resolve the directory: {e}")))?;
            let prefix = Path::from_absolute_path(&abs).map_err(|e| bad(e.to_string()))?;
            return Ok(Target {
                store: Arc::new(LocalFileSystem::new()),
                store_url: Url::parse("file:///").expect("valid URL"),
                prefix,
                display: abs.display().to_string(),
            });
        };
        let bucket = url.host_str().unwrap_or_default().to_string();
        if bucket.is_empty() {
            return Err(bad("the URL names no bucket or container (s3://BUCKET/PATH)".into()));
        }
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" | "s3a" => Arc::new(AmazonS3Builder::from_env().with_url(url.as_str()).build().map_err(|e| bad(e.to_string()))?),
            "gs" => Arc::new(GoogleCloudStorageBuilder::from_env().with_url(url.as_str()).build().map_err(|e| bad(e.to_string()))?),
            "az" | "azure" | "abfs" | "abfss" | "adl" => {
                Arc::new(MicrosoftAzureBuilder::from_env().with_url(url.as_str()).build().map_err(|e| bad(e.to_string()))?)
            }
            other => return Err(bad(format!("scheme {other}:// is not supported (use a directory, s3://, gs:// or az://)"))),
        };
        let store_url = Url::parse(&format!("{}://{}/", url.scheme(), bucket)).map_err(|e| bad(e.to_string()))?;
        let prefix = Path::from_url_path(url.path()).map_err(|e| bad(e.to_string()))?;
        Ok(Target { store, store_url, prefix, display: location.to_string() })
    }

    /// Opens an archive to read: a directory must exist already.
    pub fn open_existing(location: &str) -> Result<Target, ArchiveError> {
        let is_url = Url::parse(location).map(|u| u.scheme().len() > 1 && u.scheme() != "file").unwrap_or(false);
        if !is_url {
            let path = std::path::Path::new(location.strip_prefix("file://").unwrap_or(location));
            if !path.is_dir() {
                return Err(ArchiveError::Location {
                    location: location.to_string(),
                    reason: "no such directory (make an archive with `aiwatch scan --archive DIR`)".into(),
                });
            }
        }
        Target::open(location)
    }

    /// The location of `rel` (a `/`-separated relative path) in the store.
    pub fn path(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// The URL of `rel` as DataFusion lists it (ends with `/` for a folder).
    pub fn url(&self, rel: &str) -> String {
        let path = self.path(rel);
        format!("{}{}/", self.store_url.as_str(), path.as_ref())
    }
}
