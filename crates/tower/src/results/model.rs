//! The results of a flight's recordings, as `GET /api/v1/flights/{studyname}/results` answers
//! them and the dashboard draws them (`docs/api.md#results`). Only the shape lives here; the
//! numbers are computed in `results::compute` from the rollups kept at ingest.

use serde::Serialize;

/// Every topic the flight's recordings watch, per arm.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Results {
    pub studyname: String,
    /// The arms in the flight's order; the first is the control. A flight without arms has
    /// one arm named by `NO_ARM`.
    pub arms: Vec<String>,
    pub topics: Vec<TopicResults>,
}

/// The arm name results use for a flight without arms (events carry `arm: null`).
pub const NO_ARM: &str = "(all)";

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicResults {
    pub topic: String,
    /// One per arm, in the order of `Results::arms`.
    pub arms: Vec<ArmResults>,
    /// Events per day and arm, oldest day first (days without events are left out).
    pub days: Vec<DayCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArmResults {
    pub arm: String,
    /// Clients enrolled in the arm (from reports), never fewer than `clients_with_event`.
    pub clients: u64,
    pub clients_with_event: u64,
    pub events: u64,
    pub per_client: Mean,
    pub share: Share,
    /// Absent for the control (the first arm).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_control: Option<VsControl>,
}

/// Events per client: the mean and its 95 % interval (`null` where the data do not define them).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Mean {
    pub mean: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// The share of clients with at least one event and its 95 % Wilson interval.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Share {
    pub value: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VsControl {
    /// Welch's t-test on events per client.
    pub per_client: Difference,
    /// The two-proportion z-test on the share of clients with the event.
    pub share: Difference,
}

/// This arm minus the control, its 95 % interval and the two-sided p-value.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Difference {
    pub diff: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub p: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DayCount {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub arm: String,
    pub events: u64,
}
