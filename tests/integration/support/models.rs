//! Models and pointers for the store and registry tests: an ElasticNet model trained on the
//! bundled data, copies of it under other version ids, and champion pointers.

use sommelier::model::algorithm::{Algorithm, ModelSpec, SpecOverrides};
use sommelier::model::artifact::{DataSource, ModelArtifact};
use sommelier::model::dataset::read_training_data;
use sommelier::model::training::{train, TrainOptions, Trigger};
use sommelier::registry::{now_rfc3339, Champion};

use super::bundled_csv;

/// ElasticNet with the default settings, 20 % held out, as `sommelier train` would run it.
pub fn elastic_net_options() -> TrainOptions {
    TrainOptions {
        holdout: 0.2,
        ..TrainOptions::new(
            ModelSpec::build(Algorithm::ElasticNet, &SpecOverrides::default())
                .expect("elastic net spec"),
            DataSource::named("winequality-red.csv"),
            Trigger::Cli,
        )
    }
}

/// An encoded ElasticNet model trained on the bundled data.
pub fn trained_model_bytes() -> Vec<u8> {
    let dataset = read_training_data(&bundled_csv()[..]).expect("bundled data parses");
    train(&dataset, &elastic_net_options())
        .expect("train")
        .artifact
        .encode()
        .expect("encode")
}

/// A copy of the encoded model under another version id.
pub fn renamed(model: &[u8], version: &str) -> ModelArtifact {
    let mut artifact = ModelArtifact::decode(model).expect("decode");
    artifact.card.version = version.to_string();
    artifact
}

/// A pointer naming `version`, with no previous champion.
pub fn champion(version: &str) -> Champion {
    Champion {
        version: version.to_string(),
        previous: None,
        updated_at: now_rfc3339(),
    }
}
