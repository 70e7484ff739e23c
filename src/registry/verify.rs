//! What makes a version servable: its card survives a JSON round trip (every statistic
//! finite), its artifact decodes, and it predicts finite values. Before a version is saved,
//! the decoded copy must also predict exactly what the in-memory model predicts, so a model
//! that would only break after the store is never written.

use crate::model::artifact::{ModelArtifact, ModelCard};
use crate::model::features::{FeatureRow, FEATURE_BOUNDS, FEATURE_COUNT};

/// Rows to predict on: the corners and middle of the training range and of the physical
/// bounds, from the card alone (no data needed), so any build can check any version.
pub fn sample_rows(card: &ModelCard) -> Vec<FeatureRow> {
    let mut rows = Vec::new();
    let pick = |f: &dyn Fn(usize) -> f64| -> FeatureRow {
        let mut row = [0.0; FEATURE_COUNT];
        for (i, value) in row.iter_mut().enumerate() {
            *value = f(i);
        }
        row
    };
    let stats = &card.feature_stats;
    if stats.len() == FEATURE_COUNT {
        rows.push(pick(&|i| stats[i].min));
        rows.push(pick(&|i| stats[i].max));
        rows.push(pick(&|i| stats[i].mean));
        rows.push(pick(&|i| stats[i].min / 2.0 + stats[i].max / 2.0));
    }
    rows.push(pick(&|i| FEATURE_BOUNDS[i].0));
    rows.push(pick(&|i| FEATURE_BOUNDS[i].1));
    rows.retain(|row| row.iter().all(|v| v.is_finite()));
    rows
}

/// Why the card cannot be stored and read back, if it cannot (a non-finite statistic is
/// written as `null`, which no reader accepts).
pub fn card_problem(card: &ModelCard) -> Option<String> {
    let json = match serde_json::to_vec(card) {
        Ok(json) => json,
        Err(e) => return Some(format!("the card cannot be written: {e}")),
    };
    match serde_json::from_slice::<ModelCard>(&json) {
        Ok(read) if read == *card => None,
        Ok(_) => Some("the card does not read back as written".to_string()),
        Err(e) => Some(format!("the card does not read back: {e}")),
    }
}

/// Why `artifact` cannot serve, if it cannot: a card that does not round-trip, or a
/// prediction that fails or is not finite.
pub fn serving_problem(artifact: &ModelArtifact) -> Option<String> {
    if let Some(problem) = card_problem(&artifact.card) {
        return Some(problem);
    }
    let rows = sample_rows(&artifact.card);
    match artifact.predict(&rows) {
        Ok(values) if values.len() != rows.len() => Some(format!(
            "{} predictions for {} rows",
            values.len(),
            rows.len()
        )),
        Ok(values) => values
            .iter()
            .any(|v| !v.is_finite())
            .then(|| "it predicts non-finite values".to_string()),
        Err(e) => Some(format!("it cannot predict: {e}")),
    }
}

/// Encodes `artifact`, decodes the bytes and checks the copy predicts exactly what the
/// original does; returns the bytes to store, or why they must not be stored.
pub fn encode_verified(artifact: &ModelArtifact) -> Result<Vec<u8>, String> {
    if let Some(problem) = serving_problem(artifact) {
        return Err(problem);
    }
    let bytes = artifact
        .encode()
        .map_err(|e| format!("it cannot be encoded: {e}"))?;
    let copy =
        ModelArtifact::decode(&bytes).map_err(|e| format!("its encoding does not decode: {e}"))?;
    if copy.card != artifact.card {
        return Err("the decoded card differs from the trained one".to_string());
    }
    let rows = sample_rows(&artifact.card);
    let original = artifact
        .predict(&rows)
        .map_err(|e| format!("it cannot predict: {e}"))?;
    let decoded = copy
        .predict(&rows)
        .map_err(|e| format!("the decoded model cannot predict: {e}"))?;
    let identical = original.len() == decoded.len()
        && original
            .iter()
            .zip(&decoded)
            .all(|(a, b)| a.to_bits() == b.to_bits());
    if !identical {
        return Err("the decoded model predicts differently from the trained one".to_string());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundled::WINE_QUALITY_RED_CSV;
    use crate::model::algorithm::{Algorithm, ModelSpec, SpecOverrides};
    use crate::model::artifact::DataSource;
    use crate::model::dataset::read_training_data;
    use crate::model::training::{train, TrainOptions, Trigger};
    use crate::registry::{LocalStore, ModelStore, Registry, RegistryError, Store};

    fn trained() -> ModelArtifact {
        let dataset = read_training_data(WINE_QUALITY_RED_CSV).unwrap();
        let options = TrainOptions {
            holdout: 0.2,
            ..TrainOptions::new(
                ModelSpec::build(Algorithm::ElasticNet, &SpecOverrides::default()).unwrap(),
                DataSource::named("bundled"),
                Trigger::Cli,
            )
        };
        train(&dataset, &options).unwrap().artifact
    }

    #[test]
    fn a_sound_model_round_trips() {
        let artifact = trained();
        assert_eq!(serving_problem(&artifact), None);
        let bytes = encode_verified(&artifact).unwrap();
        assert_eq!(ModelArtifact::decode(&bytes).unwrap().card, artifact.card);
        assert!(sample_rows(&artifact.card).len() >= 6);
    }

    #[tokio::test]
    async fn a_model_with_a_non_finite_statistic_is_never_written() {
        let mut artifact = trained();
        artifact.card.feature_stats[3].std = f64::INFINITY;
        let problem = encode_verified(&artifact).unwrap_err();
        assert!(problem.contains("card"), "{problem}");

        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(Store::Local(LocalStore::new(dir.path())));
        match registry.save(&artifact).await {
            Err(RegistryError::Unservable { version, .. }) => {
                assert_eq!(version, artifact.card.version)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(registry.store().list_versions().await.unwrap().is_empty());
    }
}
