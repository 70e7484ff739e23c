//! `sommelier models`: list, verify, show, export and promote versions.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::config::Settings;
use crate::model::artifact::ModelArtifact;
use crate::registry::open_registry;
use crate::registry::{Registry, RegistryError, VersionEntry};
use crate::text::counted;
use crate::tracking::Tracker;

use super::train::metrics_line;
use super::{load_model, CliError, ExportFormat, ModelsAction, ModelsArgs, Output};

pub(super) async fn models(
    settings: &Settings,
    args: ModelsArgs,
    output: Output,
) -> Result<(), CliError> {
    let registry = open_registry(settings).await?;
    let tracker = Tracker::from_settings(settings);
    match args.action {
        Some(ModelsAction::Promote { version }) => {
            return promote(&registry, &tracker, &version, output).await
        }
        Some(ModelsAction::Show { version }) => {
            let model = load_model(&registry, version.as_deref()).await?;
            return show(&model, output);
        }
        Some(ModelsAction::Export {
            version,
            format: ExportFormat::ShapJson,
            output: path,
        }) => {
            let model = load_model(&registry, version.as_deref()).await?;
            return export(&model, &path, output);
        }
        Some(ModelsAction::List) | None => {}
    }
    let champion = registry.champion().await?.map(|p| p.champion.version);
    let mut entries = registry.versions().await?;
    if args.verify {
        entries = registry.verify_versions(entries).await?;
    }
    let run_ids = if tracker.is_enabled() {
        tracker
            .run_ids(
                &entries
                    .iter()
                    .map(|e| e.version.clone())
                    .collect::<Vec<_>>(),
            )
            .await
    } else {
        Default::default()
    };
    let broken: Vec<&str> = entries
        .iter()
        .filter(|e| e.problem().is_some())
        .map(|e| e.version.as_str())
        .collect();
    let value = json!({
        "champion": champion,
        "store": registry.store_location(),
        "verified": args.verify,
        "broken": broken,
        "versions": entries.iter().map(|e| {
            let is_champion = Some(&e.version) == champion.as_ref();
            match &e.card {
                Ok(c) => json!({
                    "version": c.version, "algorithm": c.spec.algorithm(), "created_at": c.created_at,
                    "metrics": c.metrics, "training_rows": c.training_rows, "trigger": c.trigger,
                    "source": c.source, "champion": is_champion,
                    "mlflow_run_id": run_ids.get(&c.version), "problem": e.artifact_problem,
                    "artifact": e.artifact,
                }),
                Err(problem) => json!({
                    "version": e.version, "champion": is_champion, "problem": problem,
                    "mlflow_run_id": run_ids.get(&e.version),
                }),
            }
        }).collect::<Vec<_>>(),
    });
    output.print(&value, || {
        let mut text = models_table(&registry, &entries, champion.as_deref(), &run_ids);
        if args.verify {
            text.push_str(&verify_summary(entries.len(), &broken));
        }
        text
    });
    if args.verify && !broken.is_empty() {
        return Err(CliError::VerifyFailed {
            broken: broken.len(),
            total: entries.len(),
        });
    }
    Ok(())
}

/// The last line of `models --verify`: how many versions were checked and which cannot serve.
fn verify_summary(total: usize, broken: &[&str]) -> String {
    let verified = counted(total as u64, "version");
    match (broken.is_empty(), total) {
        (true, 1) => format!("\nVerified {verified}: it loads and predicts."),
        (true, _) => format!("\nVerified {verified}: every one loads and predicts."),
        (false, _) => format!(
            "\nVerified {verified}: {} cannot serve: {}",
            broken.len(),
            broken.join(", ")
        ),
    }
}

/// `models show VERSION`: the card, with its calibration and global importance.
fn show(model: &ModelArtifact, output: Output) -> Result<(), CliError> {
    let card = &model.card;
    let value = serde_json::to_value(card).unwrap_or_default();
    output.print(&value, || {
        let mut text = format!(
            "Model {} ({}), trained {} on {} rows of {}",
            card.version,
            card.spec.algorithm().name(),
            card.created_at,
            card.training_rows,
            card.source.name
        );
        match &card.metrics {
            Some(m) => text.push_str(&format!("\nHoldout ({} rows): {}", m.rows, metrics_line(m))),
            None => text.push_str("\nNo holdout: not evaluated."),
        }
        match &card.calibration {
            Some(c) => {
                let widths: Vec<String> = c
                    .quantiles
                    .iter()
                    .map(|q| {
                        let width = q
                            .half_width
                            .map_or("unbounded".to_string(), |h| format!("±{h:.3}"));
                        format!("{:.0} % {width}", q.coverage * 100.0)
                    })
                    .collect();
                text.push_str(&format!(
                    "\nIntervals ({}, {} held-out rows): {}",
                    c.method,
                    c.rows,
                    widths.join(", ")
                ));
            }
            None => {
                text.push_str("\nIntervals: none (trained before intervals, or without a holdout)")
            }
        }
        match &card.importance {
            Some(importance) => {
                text.push_str(&format!(
                    "\nGlobal importance (mean |contribution| over {} held-out rows):",
                    importance.rows
                ));
                for entry in &importance.features {
                    text.push_str(&format!(
                        "\n  {:<22} {:.4}",
                        entry.feature, entry.mean_abs_contribution
                    ));
                }
            }
            None => text.push_str(
                "\nGlobal importance: none (trained before explanations, or without a holdout)",
            ),
        }
        text
    });
    Ok(())
}

/// `models export VERSION --format shap-json --output FILE`.
fn export(model: &ModelArtifact, path: &Path, output: Output) -> Result<(), CliError> {
    let export = crate::model::explain_export::shap_export(model)?;
    let failed = |source| CliError::Write {
        path: path.display().to_string(),
        source,
    };
    let bytes = serde_json::to_vec(&export).map_err(|e| failed(e.into()))?;
    if path.as_os_str() == "-" {
        std::io::stdout().lock().write_all(&bytes).map_err(failed)?;
        return Ok(());
    }
    std::fs::write(path, &bytes).map_err(failed)?;
    let value = json!({
        "version": model.card.version, "format": "shap-json", "output": path.display().to_string(),
        "trees": export.trees.len(), "base_value": export.base_value,
    });
    output.print(&value, || {
        format!(
            "Wrote {} of {} to {} (shap-json, base value {:.6})",
            counted(export.trees.len() as u64, "tree"),
            model.card.version,
            path.display(),
            export.base_value
        )
    });
    Ok(())
}

/// `models promote VERSION`: refused unless the version loads and serves; then the pointer
/// moves and so does MLflow's `champion` alias (when tracking is on).
async fn promote(
    registry: &Registry,
    tracker: &Tracker,
    version: &str,
    output: Output,
) -> Result<(), CliError> {
    // Read first, for the message only: promoting the champion changes nothing.
    let before = registry
        .champion()
        .await?
        .map(|pointer| pointer.champion.version);
    let pointer = registry
        .promote(version)
        .await
        .map_err(|error| match error {
            RegistryError::VersionNotFound(version) => CliError::UnknownVersion(version),
            other => other.into(),
        })?;
    tracker.champion_moved(&pointer.champion.version).await;
    let already = before.as_deref() == Some(pointer.champion.version.as_str());
    let value = json!({
        "champion": pointer.champion.version,
        "previous": pointer.champion.previous,
        "changed": !already,
    });
    output.print(&value, || {
        if already {
            return format!(
                "{} is already the champion; nothing changed",
                pointer.champion.version
            );
        }
        format!(
            "Champion is now {} (was {})",
            pointer.champion.version,
            before.as_deref().unwrap_or("none")
        )
    });
    Ok(())
}

fn models_table(
    registry: &Registry,
    entries: &[VersionEntry],
    champion: Option<&str>,
    run_ids: &std::collections::HashMap<String, String>,
) -> String {
    if entries.is_empty() {
        return format!(
            "No models in {} yet: run `sommelier train`.",
            registry.store_location()
        );
    }
    let mut text = format!(
        "  {:<28} {:<14} {:>8} {:>8} {:>8} {:>6}  {:<20}  source",
        "version", "algorithm", "rmse", "mae", "r2", "rows", "created"
    );
    for entry in entries {
        let mark = if Some(entry.version.as_str()) == champion {
            "*"
        } else {
            " "
        };
        let c = match &entry.card {
            Ok(card) => card,
            Err(problem) => {
                text.push_str(&format!("\n{mark} {:<28} BROKEN: {problem}", entry.version));
                continue;
            }
        };
        let (rmse, mae, r2) = c.metrics.map_or(("-".into(), "-".into(), "-".into()), |m| {
            (
                format!("{:.4}", m.rmse),
                format!("{:.4}", m.mae),
                format!("{:.4}", m.r2),
            )
        });
        text.push_str(&format!(
            "\n{mark} {:<28} {:<14} {:>8} {:>8} {:>8} {:>6}  {:<20}  {}",
            c.version,
            c.spec.algorithm().name(),
            rmse,
            mae,
            r2,
            c.training_rows,
            c.created_at,
            c.source.name
        ));
        if let Some(run_id) = run_ids.get(&c.version) {
            text.push_str(&format!("  mlflow run {run_id}"));
        }
        if let Some(problem) = &entry.artifact_problem {
            text.push_str(&format!("\n  {:<28} BROKEN: {problem}", ""));
        }
    }
    text.push_str("\n(* champion)");
    text
}
