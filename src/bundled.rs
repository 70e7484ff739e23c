//! The bundled UCI red-wine data (see data/README.md), embedded so that training works
//! from any directory with no setup.

/// The CSV bytes of data/winequality-red.csv.
pub const WINE_QUALITY_RED_CSV: &[u8] = include_bytes!("../data/winequality-red.csv");

/// The name recorded as the data source of models trained on it.
pub const SOURCE_NAME: &str = "bundled:winequality-red.csv";
