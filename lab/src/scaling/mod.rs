pub mod modern;
