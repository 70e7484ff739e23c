//! `sommelier evaluate`: a version's metrics on labelled rows, seen and unseen apart.

use serde_json::json;

use crate::config::Settings;
use crate::model::dataset::{read_labelled, Dataset};
use crate::model::metrics::Metrics;
use crate::model::split::HashName;
use crate::registry::open_registry;

use super::train::metrics_line;
use super::{load_model, open_input, CliError, EvaluateArgs, Output};

pub(super) async fn evaluate_command(
    settings: &Settings,
    args: EvaluateArgs,
    output: Output,
) -> Result<(), CliError> {
    let registry = open_registry(settings).await?;
    let model = load_model(&registry, args.version.as_deref()).await?;
    let path = args.data.display().to_string();
    let dataset =
        read_labelled(open_input(&args.data)?).map_err(|source| CliError::Data { path, source })?;
    let predictions = model
        .predict(&dataset.rows)
        .map_err(|e| CliError::Predict(e.to_string()))?;
    let metrics = Metrics::compute(&predictions, &dataset.targets);
    let overlap = Overlap::of(&model.card, &dataset, &predictions);
    let value = json!({
        "rmse": metrics.rmse, "mae": metrics.mae, "r2": metrics.r2,
        "within_0_5": metrics.within_0_5, "within_1_0": metrics.within_1_0,
        "rows": metrics.rows, "version": model.card.version,
        "training_side_rows": overlap.as_ref().map(|o| o.training_side),
        "unseen": overlap.as_ref().and_then(|o| o.unseen),
    });
    output.print(&value, || {
        let mut text = format!(
            "Model {} on {} rows: {}",
            model.card.version,
            metrics.rows,
            metrics_line(&metrics)
        );
        text.push_str(&match &overlap {
            None => "\nThis version's card records no split rule: whether it trained on these \
                     rows is unknown."
                .to_string(),
            Some(overlap) => overlap.describe(),
        });
        text
    });
    Ok(())
}

/// How the rows of an evaluation relate to the version's own training: the rows that its
/// split rule puts on the training side (it trained on them if they were in its training
/// data) and the metrics on the rest, which it never saw.
struct Overlap {
    training_side: usize,
    unseen: Option<Metrics>,
}

impl Overlap {
    /// `None` when the card records no split rule this build can apply.
    fn of(
        card: &crate::model::artifact::ModelCard,
        data: &Dataset,
        predictions: &[f64],
    ) -> Option<Overlap> {
        let rule = card.split.filter(|r| r.hash != HashName::Unknown)?;
        let (mut predicted, mut targets) = (Vec::new(), Vec::new());
        for ((row, &prediction), &target) in data.rows.iter().zip(predictions).zip(&data.targets) {
            if rule.holds_out(row) {
                predicted.push(prediction);
                targets.push(target);
            }
        }
        Some(Overlap {
            training_side: data.rows.len() - predicted.len(),
            unseen: (!predicted.is_empty()).then(|| Metrics::compute(&predicted, &targets)),
        })
    }

    fn describe(&self) -> String {
        if self.training_side == 0 {
            return "\nNone of these rows is on this version's training side: the figures \
                    above are on rows it never saw."
                .to_string();
        }
        let mut text = format!(
            "\n{} of these rows are on this version's training side of its split: it trained \
             on them if they were in its training data, so the figures above may flatter it.",
            self.training_side
        );
        text.push_str(&match &self.unseen {
            Some(m) => format!(
                "\nOn the other {} rows, which it never saw: {}",
                m.rows,
                metrics_line(m)
            ),
            None => "\nNo row is left that it never saw.".to_string(),
        });
        text
    }
}
