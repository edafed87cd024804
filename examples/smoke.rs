use softmax_wgpu::*;
fn main() {
    for e in Engine::all_blocking(EngineOptions::default()).unwrap() {
        println!("{}", e.info());
        let o = SoftmaxOptions::default();
        let x = [1000.0f32, 1001.0, 999.0, 1234.0, 0.0, f32::NEG_INFINITY];
        println!("{:?}", e.softmax(&x, Shape::new(2, 3), &o));
        println!("{:?}", e.log_softmax(&x, Shape::new(2, 3), &o));
        println!("{:?}", e.logsumexp(&x, Shape::new(2, 3), &o));
        let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
        println!("{:?}", e.softmax(&h, Shape::new(3, 2), &o));
        let b: Vec<half::bf16> = x.iter().map(|&v| half::bf16::from_f32(v)).collect();
        println!("{:?}", e.softmax(&b, Shape::new(2, 3), &o));
    }
}
