//! Champion/challenger rules: when a newly trained model replaces the serving one.
//!
//! The two models are compared only on rows that neither trained on (see
//! [`crate::model::split`]), paired row by row. The challenger is promoted when, with 95 %
//! confidence, it is not worse than the champion by more than the tolerance: the upper end of
//! the 95 % interval of the mean difference of squared errors lies within the margin that
//! the relative RMSE tolerance allows. When no fair comparison is possible, the champion
//! stays unless the promotion is forced.

use serde::Serialize;

use crate::model::comparison::PairedComparison;

/// The outcome of comparing a challenger with the champion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub promote: bool,
    pub reason: String,
    /// The challenger's RMSE on the compared rows (else on its own holdout).
    pub challenger_rmse: Option<f64>,
    /// The champion's RMSE on the compared rows.
    pub champion_rmse: Option<f64>,
    /// The paired comparison behind the decision, when one was possible.
    pub comparison: Option<PairedComparison>,
    /// Population stability index of the challenger's labels against the champion's, when
    /// both cards record them.
    pub label_shift: Option<f64>,
    /// The comparison alone would promote, but the labels shifted beyond the limit.
    pub held_for_label_shift: bool,
}

/// Holds a promotion whose training labels differ from the champion's by a PSI above
/// `max_shift`, unless forced. The comparison cannot see such a shift: it scores both models
/// on the challenger's own held-out rows, so data whose labels were all moved (poisoned, or
/// from another scale) makes the challenger win by construction. A real change of the wines
/// is promoted by a person, with `--force`.
pub fn hold_for_label_shift(
    mut decision: Decision,
    shift: Option<f64>,
    max_shift: f64,
    force: bool,
) -> Decision {
    decision.label_shift = shift;
    let Some(shift) = shift.filter(|s| *s > max_shift) else {
        return decision;
    };
    let why = format!(
        "the training's quality labels differ from the champion's: label PSI {shift:.3} exceeds {max_shift} (SOMMELIER_MAX_LABEL_SHIFT)"
    );
    if force {
        decision.reason = format!("{} ({why})", decision.reason);
    } else if decision.promote {
        decision.promote = false;
        decision.held_for_label_shift = true;
        decision.reason = format!(
            "held for review: {why}, so the comparison on the new data's own rows cannot be trusted ({}); use --force to promote",
            decision.reason
        );
    }
    decision
}

/// What is known about the current champion.
#[derive(Debug, Clone, PartialEq)]
pub enum ChampionScore {
    /// No champion exists.
    None,
    /// Both models scored on the rows neither trained on.
    Compared(PairedComparison),
    /// A champion exists, but no fair comparison is possible (why).
    NotComparable(String),
    /// A champion exists but cannot be loaded or scored (e.g. written by an incompatible build).
    Unusable(String),
}

/// Decides from the champion's score; `challenger_rmse` is the challenger's holdout RMSE
/// (`None` when it was trained on every row).
pub fn decide(
    challenger_rmse: Option<f64>,
    champion: &ChampionScore,
    tolerance: f64,
    force: bool,
) -> Decision {
    let comparison = match champion {
        ChampionScore::Compared(c) => Some(*c),
        _ => None,
    };
    let decision = |promote: bool, reason: String| Decision {
        promote,
        reason,
        challenger_rmse: comparison.map_or(challenger_rmse, |c| Some(c.challenger_rmse)),
        champion_rmse: comparison.map(|c| c.champion_rmse),
        comparison,
        label_shift: None,
        held_for_label_shift: false,
    };
    let forced = |reason: String| format!("promotion forced ({reason})");
    match champion {
        ChampionScore::None => decision(true, "no champion yet".to_string()),
        ChampionScore::Unusable(why) => {
            decision(true, format!("the current champion cannot be used ({why})"))
        }
        ChampionScore::NotComparable(why) if force => decision(true, forced(why.clone())),
        ChampionScore::NotComparable(why) => decision(
            false,
            format!("the models cannot be compared fairly: {why}; the champion stays (use --force to promote)"),
        ),
        ChampionScore::Compared(c) => {
            let verdict = verdict(c, tolerance);
            if force {
                decision(true, forced(verdict))
            } else {
                decision(c.not_worse_beyond(tolerance), verdict)
            }
        }
    }
}

/// The comparison in words: both RMSEs, the interval and what it means for the tolerance.
fn verdict(comparison: &PairedComparison, tolerance: f64) -> String {
    let [low, high] = comparison.interval_95;
    let evidence = format!(
        "on {} rows neither model trained on, RMSE {:.4} vs the champion's {:.4}; \
         mean difference of squared errors {:+.4}, 95 % interval [{low:+.4}, {high:+.4}]",
        comparison.rows,
        comparison.challenger_rmse,
        comparison.champion_rmse,
        comparison.mean_squared_error_difference
    );
    let margin = comparison.margin(tolerance);
    let percent = tolerance * 100.0;
    if comparison.not_worse_beyond(tolerance) {
        format!("{evidence}: not worse than the champion by more than {percent:.1}% (upper end ≤ {margin:+.4}) with 95 % confidence")
    } else {
        format!("{evidence}: the interval's upper end exceeds {margin:+.4}, so it may be worse than the champion by more than {percent:.1}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::comparison::IntervalMethod;

    fn compared(champion: f64, challenger: f64, interval: [f64; 2]) -> ChampionScore {
        ChampionScore::Compared(PairedComparison {
            rows: 100,
            champion_rmse: champion,
            challenger_rmse: challenger,
            mean_squared_error_difference: (interval[0] + interval[1]) / 2.0,
            interval_95: interval,
            method: IntervalMethod::PairedBootstrap,
        })
    }

    #[test]
    fn first_model_is_always_promoted() {
        assert!(decide(Some(0.9), &ChampionScore::None, 0.01, false).promote);
        assert!(decide(None, &ChampionScore::None, 0.01, false).promote);
    }

    #[test]
    fn promotion_needs_confidence_within_the_tolerance() {
        // Champion MSE 0.36; 1 % on the RMSE allows +0.007236 on the MSE.
        let better = decide(Some(0.5), &compared(0.6, 0.55, [-0.08, -0.04]), 0.01, false);
        assert!(better.promote, "{}", better.reason);
        assert!(better.reason.contains("95 %"), "{}", better.reason);
        assert_eq!(better.champion_rmse, Some(0.6));
        assert_eq!(better.challenger_rmse, Some(0.55));
        assert!(better.comparison.is_some());

        let unsure = decide(Some(0.5), &compared(0.6, 0.6, [-0.02, 0.02]), 0.01, false);
        assert!(!unsure.promote, "{}", unsure.reason);
        assert!(unsure.reason.contains("may be worse"), "{}", unsure.reason);

        let tie = decide(Some(0.5), &compared(0.6, 0.6, [0.0, 0.0]), 0.0, false);
        assert!(tie.promote, "a tie keeps the newer model");
        assert!(decide(Some(0.5), &compared(0.6, 0.6, [-0.02, 0.007]), 0.01, false).promote);
    }

    #[test]
    fn not_comparable_keeps_the_champion_unless_forced() {
        let score = ChampionScore::NotComparable("the champion was trained on every row".into());
        let kept = decide(Some(0.5), &score, 0.01, false);
        assert!(!kept.promote);
        assert!(
            kept.reason.contains("cannot be compared fairly"),
            "{}",
            kept.reason
        );
        assert!(kept.reason.contains("every row"), "{}", kept.reason);
        assert_eq!(kept.champion_rmse, None);
        let forced = decide(Some(0.5), &score, 0.01, true);
        assert!(forced.promote && forced.reason.contains("forced"));
    }

    #[test]
    fn worse_models_are_kept_but_promoted_when_forced() {
        let worse = compared(0.5, 0.8, [0.3, 0.4]);
        let kept = decide(Some(0.8), &worse, 0.01, false);
        assert!(!kept.promote);
        let forced = decide(Some(0.8), &worse, 0.01, true);
        assert!(forced.promote && forced.reason.contains("forced"));
        assert!(
            forced.comparison.is_some(),
            "the evidence is kept when forced"
        );
    }

    #[test]
    fn an_unusable_champion_is_replaced() {
        let d = decide(
            Some(0.7),
            &ChampionScore::Unusable("corrupt".into()),
            0.01,
            false,
        );
        assert!(d.promote && d.reason.contains("corrupt"));
    }
}
