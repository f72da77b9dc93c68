//! [`Refusal`]: an answer the proxy gives itself instead of a backend's, and why.

use std::rc::Rc;

use super::super::answers::Status;
use crate::worker::front::FrontIo;
use crate::worker::upstream::NoBackend;
use weir_schema::metric_names::ServerError;

/// Why a request is answered by the proxy itself (an error, or a frontend's redirect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    pub keep_alive: bool,
    /// The listener's own body for this answer.
    pub custom: Option<Rc<str>>,
    /// The refused request was `HEAD` (known once its head parsed): no body in the answer.
    pub head_only: bool,
    /// A redirect's `Location`.
    pub location: Option<Box<str>>,
    /// The route's `Strict-Transport-Security` value, once the request was routed.
    pub hsts: Option<Rc<str>>,
    /// Why a 5xx, when its status alone does not say (a 502 after every connect failed).
    pub cause: Option<ServerError>,
}

impl Refusal {
    pub fn close(status: Status) -> Refusal {
        Refusal {
            status,
            keep_alive: false,
            custom: None,
            head_only: false,
            location: None,
            hsts: None,
            cause: None,
        }
    }

    pub(super) fn with_hsts(self, hsts: &Option<Rc<str>>) -> Refusal {
        Refusal {
            hsts: hsts.clone(),
            ..self
        }
    }

    /// The answer when no backend connection could be had.
    pub(super) fn no_backend(no: NoBackend, io: &FrontIo) -> Refusal {
        match no {
            NoBackend::NoneHealthy | NoBackend::LocalShortage => Refusal {
                custom: io.info.answer_503.clone(),
                ..Refusal::close(Status::Unavailable)
            },
            NoBackend::ConnectFailed => Refusal {
                cause: Some(ServerError::ConnectFailed),
                ..Refusal::close(Status::BadGateway)
            },
        }
    }
}
