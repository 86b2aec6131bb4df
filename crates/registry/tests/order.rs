//! The same events applied in any interleaving across members give the same view.

use bowline_model::{Network, SourceEvent};
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::{
    arbitrary::{events, member_history},
    *,
};
use proptest::prelude::*;

const MEMBERS: [&str; 3] = ["east", "west", "central"];

fn new_registry() -> Registry {
    Registry::new(
        "demo",
        MEMBERS.iter().map(|m| MemberConfig {
            name: member(m),
            id: None,
            network: Network::new(format!("{m}-net")),
        }),
    )
}

fn snapshot(reg: &Registry) -> String {
    serde_json::to_string(&(reg.services(), reg.gateways(), reg.members())).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn any_interleaving_gives_the_same_view(
        histories in prop::collection::vec(member_history(), 3),
        order in prop::collection::vec(0..3usize, 0..64),
        batch_sizes in prop::collection::vec(1..4usize, 1..16),
    ) {
        let per_member: Vec<Vec<SourceEvent>> =
            MEMBERS.iter().zip(&histories).map(|(m, h)| events(m, h)).collect();

        // Reference: each member's events in turn, one at a time.
        let mut reference = new_registry();
        for evs in &per_member {
            for e in evs {
                reference.apply(e.clone());
            }
        }

        // Interleaved: members' events merged in a random order (each member's own order kept),
        // and applied in batches of random sizes.
        let mut queues: Vec<std::collections::VecDeque<SourceEvent>> =
            per_member.iter().map(|e| e.iter().cloned().collect()).collect();
        let mut merged = Vec::new();
        for pick in order.iter().copied().chain((0..3).cycle().take(64 * 3)) {
            if let Some(e) = queues[pick].pop_front() {
                merged.push(e);
            }
        }
        for q in &mut queues {
            merged.extend(q.drain(..));
        }
        let mut interleaved = new_registry();
        let mut rest = merged.as_slice();
        for size in batch_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (batch, tail) = rest.split_at((*size).min(rest.len()));
            interleaved.apply_all(batch.iter().cloned());
            rest = tail;
        }
        prop_assert_eq!(snapshot(&reference), snapshot(&interleaved));
    }
}
