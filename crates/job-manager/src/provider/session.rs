//! The `session` target: an existing Flink session cluster at the target's `restUrl`. The
//! manager neither starts nor stops it; jobs carry their configuration in the submission.

use futures::future::BoxFuture;

use super::{ClusterProvider, ClusterRequest, Error, Presence, Provided};
use crate::model::{ClusterRef, Deployment};

/// The provider of `session` targets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Session;

impl ClusterProvider for Session {
    fn ensure<'a>(&'a self, req: ClusterRequest<'a>) -> BoxFuture<'a, Result<Provided, Error>> {
        let cluster = ClusterRef {
            rest_url: req.target.spec.rest_url.clone().unwrap_or_default(),
            local_dir: None,
            log_dir: None,
            kubernetes: None,
        };
        Box::pin(async move {
            Ok(Provided {
                cluster,
                note: None,
            })
        })
    }

    fn observe(&self, _cluster: &ClusterRef) -> Presence {
        // A shared cluster that does not answer may come back: never gone.
        Presence::Present
    }

    fn teardown(&self, _cluster: &ClusterRef) {}

    fn default_savepoint_dir(&self, _d: &Deployment) -> Option<String> {
        None
    }

    fn default_checkpoint_dir(&self, _d: &Deployment) -> Option<String> {
        None
    }

    fn logs(&self, _cluster: &ClusterRef) -> Option<String> {
        None
    }

    fn dedicated(&self) -> bool {
        false
    }
}
