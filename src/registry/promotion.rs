//! Champion/challenger rules: when a newly trained model replaces the serving one.

use serde::Serialize;

/// The outcome of comparing a challenger with the champion on the same holdout rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub promote: bool,
    pub reason: String,
    pub challenger_rmse: Option<f64>,
    pub champion_rmse: Option<f64>,
}

/// What is known about the current champion.
#[derive(Debug, Clone, PartialEq)]
pub enum ChampionScore {
    /// No champion exists.
    None,
    /// The champion's RMSE on the challenger's holdout.
    Rmse(f64),
    /// A champion exists but cannot be loaded or scored (e.g. written by an incompatible build).
    Unusable(String),
}

/// Promote when the challenger's RMSE is at most `champion * (1 + tolerance)`, when there is
/// no (usable) champion, or when forced. Without holdout rows there is nothing to compare.
pub fn decide(
    challenger_rmse: Option<f64>,
    champion: &ChampionScore,
    tolerance: f64,
    force: bool,
) -> Decision {
    let champion_rmse = match champion {
        ChampionScore::Rmse(r) => Some(*r),
        _ => None,
    };
    let decision = |promote: bool, reason: String| Decision {
        promote,
        reason,
        challenger_rmse,
        champion_rmse,
    };
    if force {
        return decision(true, "promotion forced".to_string());
    }
    match (champion, challenger_rmse) {
        (ChampionScore::None, _) => decision(true, "no champion yet".to_string()),
        (ChampionScore::Unusable(why), _) => {
            decision(true, format!("the current champion cannot be used ({why})"))
        }
        (ChampionScore::Rmse(_), None) => decision(
            false,
            "trained without a holdout, so it cannot be compared with the champion; use --force to promote".to_string(),
        ),
        (ChampionScore::Rmse(champion), Some(challenger)) => {
            let limit = champion * (1.0 + tolerance);
            if challenger <= limit {
                decision(
                    true,
                    format!("RMSE {challenger:.4} is within {:.1}% of the champion's {champion:.4}", tolerance * 100.0),
                )
            } else {
                decision(
                    false,
                    format!("RMSE {challenger:.4} is worse than the champion's {champion:.4} by more than {:.1}%", tolerance * 100.0),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_model_is_always_promoted() {
        assert!(decide(Some(0.9), &ChampionScore::None, 0.01, false).promote);
        assert!(decide(None, &ChampionScore::None, 0.01, false).promote);
    }

    #[test]
    fn tolerance_is_relative() {
        let champion = ChampionScore::Rmse(0.60);
        assert!(decide(Some(0.6059), &champion, 0.01, false).promote);
        assert!(!decide(Some(0.6061), &champion, 0.01, false).promote);
        assert!(decide(Some(0.55), &champion, 0.0, false).promote);
        assert!(
            decide(Some(0.60), &champion, 0.0, false).promote,
            "a tie keeps the newer model"
        );
    }

    #[test]
    fn worse_models_are_kept_but_not_promoted_unless_forced() {
        let champion = ChampionScore::Rmse(0.5);
        let kept = decide(Some(0.8), &champion, 0.01, false);
        assert!(!kept.promote);
        assert!(kept.reason.contains("worse"), "{}", kept.reason);
        assert_eq!(kept.champion_rmse, Some(0.5));
        assert!(decide(Some(0.8), &champion, 0.01, true).promote);
    }

    #[test]
    fn without_holdout_a_champion_stays() {
        assert!(!decide(None, &ChampionScore::Rmse(0.5), 0.01, false).promote);
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
