//! The messages of remote write 1.0 (`prometheus/prompb/{remote,types}.proto`; field numbers
//! as there), the fields slipstream sends: no metadata or exemplars; native histograms with
//! integer counts and positive buckets only.

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series, each with its samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels sorted by name, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histogram samples in time order.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// `prometheus.Histogram`: a native histogram sample (integer counts).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// `count_int`: observations.
    #[prost(uint64, tag = "1")]
    pub count_int: u64,
    /// Their sum.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// The schema.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// The zero bucket's half-width.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// `zero_count_int`: observations in the zero bucket.
    #[prost(uint64, tag = "6")]
    pub zero_count_int: u64,
    /// Runs of positive buckets.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// Count deltas of the positive buckets.
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// `reset_hint`: 0 (unknown; Prometheus detects resets itself).
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

/// `prometheus.BucketSpan`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    /// Gap to the previous span, or the first bucket's index.
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Consecutive buckets.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}
