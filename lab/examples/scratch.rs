use lab::scaling::fit::*;
fn main() {
    let text = std::fs::read_to_string("/tmp/sweep1.out").unwrap();
    let rows: Vec<(f64, f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 9 && ["1e11", "2e11", "4e11"].contains(&f[0]) {
                Some((
                    f[3].parse().unwrap(),
                    f[5].parse().unwrap(),
                    f[8].trim_end_matches('*').parse().unwrap(),
                ))
            } else {
                None
            }
        })
        .collect();
    for th in [0.0, 2.0, 3.0, 5.0, 10.0] {
        let pts: Vec<_> = rows.iter().copied().filter(|r| r.1 / r.0 >= th).collect();
        let f = fit_chinchilla(&pts);
        println!("t/p>={th}: n={} {:?}", pts.len(), f);
        let logpts: Vec<_> = pts.iter().map(|&(n, d, l)| (n, d, l)).collect();
        let _ = logpts;
    }
}
